from django.urls import path

from quality import views

urlpatterns = [
    path("llm-usage", views.usage, name="llm-usage"),
    path("feedback", views.feedback, name="feedback"),
    path("feedback/stats", views.QualityStatsView.as_view(), name="feedback-stats"),
    path("feedback/recommendation", views.RecommendationView.as_view(), name="feedback-recommendation"),
    path("feedback/templates", views.ratings, name="template-feedback"),
    path("feedback/templates/confidence", views.TemplateConfidenceView.as_view(), name="template-confidence"),
    path("reports/<id:name>", views.ReportView.as_view(), name="report"),
]
