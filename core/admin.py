from django import forms
from django.contrib import admin, messages
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from core.models import AgentKey, Delivery, NotificationChannel
from core.notifications import DELIVERY_ERRORS, Notification, deliver, retry_failed, start_forwarding
from core.scopes import AGENT_SCOPES, SCOPES

admin.site.unregister(APIKey)  # the library's own key model; ours is AgentKey
admin.site.site_header = "Agent telemetry"
admin.site.site_title = "Agent telemetry"
admin.site.site_url = "/live/"  # the admin's "View site" link goes to the live page


class AgentKeyForm(forms.ModelForm):
    agents = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One agent id or glob pattern per line, e.g. crawler-*",
    )
    scopes = forms.MultipleChoiceField(
        choices=[(scope, f"{scope}: {text}") for scope, text in SCOPES.items()],
        widget=forms.CheckboxSelectMultiple,
        initial=AGENT_SCOPES,
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


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "target", "topic_list", "forward_list", "enabled"]
    list_filter = ["kind", "enabled"]
    actions = ["send_test"]

    @admin.display(description="notifications")
    def topic_list(self, channel: NotificationChannel) -> str:
        return ", ".join(channel.topics) or "every one"

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        start_forwarding(obj)

    @admin.display(description="forwarded records")
    def forward_list(self, channel: NotificationChannel) -> str:
        return ", ".join(channel.forwards) or "none"

    @admin.action(description="Send a test notification now")
    def send_test(self, request, queryset):
        test = Notification(topic="test", subject="Test from agent telemetry", text=f"Sent by {request.user.get_username()}.")
        for channel in queryset:
            try:
                self.message_user(request, f"{channel}: {deliver(channel, test)}", messages.SUCCESS)
            except DELIVERY_ERRORS as exc:
                self.message_user(request, f"{channel}: failed: {exc}", messages.ERROR)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    """The delivery log: every message to every channel, with its status and last error."""

    list_display = [
        "created_at",
        "topic",
        "records",
        "channel",
        "status",
        "attempts",
        "next_attempt_at",
        "delivered_at",
        "last_error",
    ]
    list_filter = ["status", "channel", "topic"]
    search_fields = ["topic", "record_id", "last_error"]
    date_hierarchy = "created_at"
    list_select_related = ["channel"]
    readonly_fields = [f.name for f in Delivery._meta.fields]
    actions = ["retry"]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("records_json")  # a batch's records: hundreds of kilobytes

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("core.change_delivery")

    @admin.action(description="Retry the failed ones", permissions=["retry"])
    def retry(self, request, queryset):
        self.message_user(request, f"{retry_failed(queryset)} failed deliveries sent again.", messages.SUCCESS)
