from django.contrib import admin

from coordination.models import Agent


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["agent_id", "display_name", "first_seen_at", "last_seen_at"]
    search_fields = ["agent_id", "display_name"]
    readonly_fields = ["first_seen_at", "last_seen_at"]
