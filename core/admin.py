from django import forms
from django.contrib import admin
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from core.models import AgentKey
from core.scopes import agent_default, known

admin.site.unregister(APIKey)  # the library's own key model; ours is AgentKey
admin.site.site_header = "Agent telemetry"
admin.site.site_title = "Agent telemetry"
admin.site.site_url = None  # no "View site": the header links the staff pages (telemetry_site/navigation.py)


class AgentKeyForm(forms.ModelForm):
    agents = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One agent id or glob pattern per line, e.g. crawler-*",
    )
    scopes = forms.MultipleChoiceField(
        choices=lambda: [(scope, f"{scope}: {text}") for scope, text in known().items()],
        widget=forms.CheckboxSelectMultiple,
        initial=agent_default,
    )

    class Meta:
        model = AgentKey
        fields = ["name", "agents", "scopes", "expiry_date", "revoked"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["agents"] = "\n".join(self.instance.agents)

    def clean_agents(self) -> list[str]:
        return [line.strip() for line in self.cleaned_data["agents"].splitlines() if line.strip()]


@admin.register(AgentKey)
class AgentKeyAdmin(APIKeyModelAdmin):
    """Keys are shown once, on creation; revoking cannot be undone."""

    form = AgentKeyForm
    list_display = ["prefix", "name", "agent_patterns", "created", "last_used_at", "expiry_date", "_has_expired", "revoked"]
    list_filter = ["revoked", "created"]
    search_fields = ["name", "prefix"]

    @admin.display(description="agents")
    def agent_patterns(self, key: AgentKey) -> str:
        return ", ".join(key.agents)

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), "last_used_at"]
