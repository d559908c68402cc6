from django.urls import path

from traces import views

urlpatterns = [
    path("traces/<id:trace_id>", views.TraceDetail.as_view(), name="trace-detail"),
]
