import json

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html, format_html_join

from coordination import heartbeats, signals
from coordination.models import Agent


class LiveChangeList(ChangeList):
    """Gives each listed agent its live state from Redis (`agent.live`), one round trip a page."""

    def get_results(self, request):
        super().get_results(request)
        live = heartbeats.states([agent.agent_id for agent in self.result_list])
        for agent in self.result_list:
            agent.live = live.get(agent.agent_id)


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    """The registry with each agent's live state; the live signals at `signals/`."""

    change_list_template = "admin/coordination/agent/change_list.html"
    list_display = ["agent_id", "display_name", "state", "progress", "current_task", "last_beat", "first_seen_at"]
    list_filter = [("stale_since", admin.EmptyFieldListFilter), ("stopped_at", admin.EmptyFieldListFilter)]
    search_fields = ["agent_id", "display_name"]
    readonly_fields = ["agent_id", "status", "first_seen_at", "last_seen_at", "stopped_at", "stale_since", "live_state"]
    fields = ["agent_id", "display_name", "stale_after_seconds", *readonly_fields[1:]]

    def get_changelist(self, request, **kwargs):
        return LiveChangeList

    def has_add_permission(self, request) -> bool:
        return False  # agents register themselves with their first heartbeat

    @admin.display(description="state")
    def state(self, agent: Agent) -> str:
        if agent.stale_since:
            silent = timezone.now() - agent.stale_since
            return format_html('<b style="color:#ba2121">stale</b> for {} s', int(silent.total_seconds()))
        if agent.stopped_at:
            return f"stopped ({agent.status})"
        return agent.live.status if agent.live else agent.status

    @admin.display(description="progress")
    def progress(self, agent: Agent) -> str:
        if not agent.live or agent.stopped_at:
            return ""
        progress = agent.live.progress
        return f"{progress * 100 if progress <= 1 else progress:.0f}%"  # a fraction, or a percentage already

    @admin.display(description="current task")
    def current_task(self, agent: Agent) -> str:
        return agent.live.current_task if agent.live and not agent.stopped_at else ""

    @admin.display(description="last beat")
    def last_beat(self, agent: Agent):
        return agent.live.last_beat if agent.live else agent.last_seen_at

    @admin.display(description="live state (Redis)")
    def live_state(self, agent: Agent):
        live = heartbeats.states([agent.agent_id]).get(agent.agent_id)
        if live is None:
            return "none (never beat, or its state expired)"
        rows = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", live.to_dict().items())
        return format_html("<table>{}</table>", rows)

    def get_urls(self):
        view = self.admin_site.admin_view(self.signals_view)
        return [path("signals/", view, name="coordination_agent_signals"), *super().get_urls()]

    def signals_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied  # admin_view lets in any staff member; the signals are the agents'
        context = {
            **self.admin_site.each_context(request),
            "title": "Live signals",
            "opts": self.model._meta,
            "signals": [
                {**signal, "sent": parse_datetime(signal["timestamp"]), "payload": json.dumps(signal["payload"])}
                for signal in signals.live()
            ],
        }
        return TemplateResponse(request, "admin/coordination/agent/signals.html", context)
