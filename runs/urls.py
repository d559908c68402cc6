from django.urls import path

from runs import views

urlpatterns = [
    path("runs", views.RunListCreate.as_view(), name="run-list"),
    path("runs/batch", views.RunBatch.as_view(), name="run-batch"),
    path("runs/<id:event_id>", views.RunDetail.as_view(), name="run-detail"),
    path("runs/<id:event_id>/associate-commit", views.AssociateCommit.as_view(), name="run-associate-commit"),
    path("runs/<id:event_id>/events", views.RunEvents.as_view(), name="run-events"),
    path("events/batch", views.EventBatch.as_view(), name="event-batch"),
]
