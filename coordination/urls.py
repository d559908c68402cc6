from django.urls import path

from coordination import views

urlpatterns = [
    path("agents/active", views.active, name="agents-active"),
    path("agents/stale", views.stale, name="agents-stale"),
    path("agents/<id:agent_id>/heartbeat/start", views.start, name="heartbeat-start"),
    path("agents/<id:agent_id>/heartbeat", views.beat, name="heartbeat"),
    path("agents/<id:agent_id>/heartbeat/stop", views.stop, name="heartbeat-stop"),
    path("agents/<id:agent_id>", views.status, name="agent-status"),
    path("signals", views.signal_list, name="signals"),
    path("signals/receive", views.signal_receive, name="signal-receive"),
]
