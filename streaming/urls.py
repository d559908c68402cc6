from django.urls import path, re_path

from core.events import EVENT_TYPE
from streaming import views

urlpatterns = [
    path("streams", views.StreamList.as_view(), name="stream-list"),
    path("streams/consume", views.consume, name="stream-consume"),
    re_path(rf"^streams/(?P<event_type>{EVENT_TYPE})$", views.Stream.as_view(), name="stream"),
    re_path(rf"^streams/(?P<event_type>{EVENT_TYPE})/info$", views.StreamInfo.as_view(), name="stream-info"),
    re_path(rf"^streams/(?P<event_type>{EVENT_TYPE})/trim$", views.StreamTrim.as_view(), name="stream-trim"),
]
