from django.urls import path

from metrics import views

urlpatterns = [
    path("metrics", views.points, name="metrics"),
    path("metrics/query", views.MetricQueryView.as_view(), name="metrics-query"),
]
