from django.urls import path

from streaming.consumers import LiveFeedConsumer

websocket_urlpatterns = [
    path("ws/live/", LiveFeedConsumer.as_asgi(), name="live-feed"),
]
