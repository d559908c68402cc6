from django.urls import path

from runs import views

urlpatterns = [
    path("runs", views.RunListCreate.as_view(), name="run-list"),
    path("runs/batch", views.RunBatch.as_view(), name="run-batch"),
    path("runs/<id:event_id>", views.RunDetail.as_view(), name="run-detail"),
    path("runs/<id:event_id>/associate-commit", views.AssociateCommit.as_view(), name="run-associate-commit"),
    path("runs/<id:event_id>/events", views.RunEvents.as_view(), name="run-events"),
    path("events/batch", views.EventBatch.as_view(), name="event-batch"),
    path("llm-usage", views.UsageBatch.as_view(), name="llm-usage"),
    path("feedback", views.FeedbackBatch.as_view(), name="feedback"),
    path("feedback/stats", views.QualityStatsView.as_view(), name="feedback-stats"),
    path("feedback/recommendation", views.RecommendationView.as_view(), name="feedback-recommendation"),
    path("feedback/templates", views.TemplateFeedbackBatch.as_view(), name="template-feedback"),
    path("feedback/templates/confidence", views.TemplateConfidenceView.as_view(), name="template-confidence"),
    path("reports/<id:name>", views.ReportView.as_view(), name="report"),
]
