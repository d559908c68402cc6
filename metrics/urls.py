from django.urls import path

from metrics import views

urlpatterns = [
    path("metrics", views.MetricBatch.as_view(), name="metrics"),
    path("metrics/query", views.MetricQueryView.as_view(), name="metrics-query"),
]
