from django.urls import path

from core.api import by_method
from runs import views

urlpatterns = [
    path("runs", by_method(views.RunList.as_view(), post=views.create_run), name="run-list"),
    path("runs/batch", views.RunBatch.as_view(), name="run-batch"),
    path("runs/<id:event_id>", by_method(views.RunDetail.as_view(), patch=views.update_run), name="run-detail"),
    path("runs/<id:event_id>/associate-commit", views.associate_commit, name="run-associate-commit"),
    path("runs/<id:event_id>/events", by_method(views.RunEvents.as_view(), post=views.record_events), name="run-events"),
    path("events/batch", views.EventBatch.as_view(), name="event-batch"),
]
