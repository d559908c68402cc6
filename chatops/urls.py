from django.urls import path

from chatops import views

urlpatterns = [
    path("slack/actions", views.slack_actions, name="slack-actions"),
]
