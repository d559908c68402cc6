from urllib.parse import urlsplit

from django import forms
from django.contrib import admin, messages

from notifications.forwarding import start_forwarding
from notifications.models import Delivery, Notification, NotificationChannel, new_secret
from notifications.services import notify, retry_failed

EMAIL = NotificationChannel.Kind.EMAIL
SLACK_APP = NotificationChannel.Kind.SLACK_APP
SHOWN_IN_FULL = (EMAIL, SLACK_APP)  # addresses, a Slack channel id: no secret in them


def shown_target(channel: NotificationChannel) -> str:
    """The target as the admin shows it: a webhook's URL without its path, query and user (where
    Slack's and others' tokens are), e-mail addresses in full."""
    if channel.kind in SHOWN_IN_FULL:
        return channel.target
    url = urlsplit(channel.target)
    return f"{url.scheme}://{url.netloc.rpartition('@')[2]}/…"


class ChannelForm(forms.ModelForm):
    """A webhook's URL and every secret are write-only: the form shows none (an empty field keeps
    the current value). A webhook's signing secret is generated on request, shown once; a Slack
    app's bot token and signing secret are given (Slack made them)."""

    regenerate_secret = forms.BooleanField(
        required=False, label="Generate a new signing secret", help_text="Shown once, after saving; the old one stops working."
    )
    token = forms.CharField(
        required=False,
        widget=forms.PasswordInput,
        label="Slack bot token",
        help_text="A Slack app's Bot User OAuth Token (xoxb-...). Write-only: leave empty to keep the current one.",
    )
    slack_signing_secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput,
        label="Slack signing secret",
        help_text="A Slack app's Signing Secret (Basic Information). Write-only: leave empty to keep the current one.",
    )

    class Meta:
        model = NotificationChannel
        fields = ["name", "kind", "target", "topics", "forwards", "enabled"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "target" in self.fields and self.instance.pk and self.instance.kind not in SHOWN_IN_FULL:  # not for view-only staff
            self.initial["target"] = ""
            self.fields["target"].required = False
            self.fields["target"].help_text = "Write-only: leave empty to keep the current URL, or give a new one."

    def clean_target(self) -> str:
        return self.cleaned_data["target"] or (self.instance.target if self.instance.pk else "")

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("kind") == SLACK_APP:
            keeps = self.instance.pk and self.instance.kind == SLACK_APP  # its token and secret are Slack's
            if not (cleaned.get("token") or (keeps and self.instance.token)):
                self.add_error("token", "A Slack app channel needs the app's bot token.")
            if not (cleaned.get("slack_signing_secret") or keeps):
                self.add_error("slack_signing_secret", "A Slack app channel needs the app's signing secret.")
        return cleaned

    def save(self, commit=True):
        if self.cleaned_data.get("token"):
            self.instance.token = self.cleaned_data["token"]
        if self.cleaned_data.get("slack_signing_secret"):
            self.instance.secret = self.cleaned_data["slack_signing_secret"]
        return super().save(commit)


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = ["name", "kind", "target_shown", "topic_list", "forward_list", "enabled"]
    list_filter = ["kind", "enabled"]
    readonly_fields = ["target_shown", "secret_shown"]
    actions = ["send_test"]

    def get_fields(self, request, obj=None):
        slack_app = ["token", "slack_signing_secret"]
        if obj is None:
            return ["name", "kind", "target", "topics", "forwards", "enabled", *slack_app]
        shown = ["name", "kind", "target_shown", "topics", "forwards", "enabled", "secret_shown"]
        if self.has_change_permission(request, obj):
            return [*shown, "target", *(slack_app if obj.kind == SLACK_APP else ["regenerate_secret"])]
        return shown

    @admin.display(description="target")
    def target_shown(self, channel: NotificationChannel) -> str:
        return shown_target(channel)

    @admin.display(description="signing secret")
    def secret_shown(self, channel: NotificationChannel) -> str:
        return "set (write-only: generate a new one to learn it)" if channel.secret else "none"

    @admin.display(description="notifications")
    def topic_list(self, channel: NotificationChannel) -> str:
        return ", ".join(channel.topics) or "every one"

    def save_model(self, request, obj, form, change):
        regenerated = form.cleaned_data.get("regenerate_secret") and obj.kind != SLACK_APP
        if regenerated:
            obj.secret = new_secret()
        super().save_model(request, obj, form, change)
        start_forwarding(obj)
        if obj.kind not in SHOWN_IN_FULL and (regenerated or not change):
            self.message_user(
                request,
                f"The signing secret of {obj} is: {obj.secret}. It is shown this once: give it to the receiver now.",
                messages.WARNING,
            )

    @admin.display(description="forwarded records")
    def forward_list(self, channel: NotificationChannel) -> str:
        return ", ".join(channel.forwards) or "none"

    @admin.action(description="Send a test notification", permissions=["change"])
    def send_test(self, request, queryset):
        """Queued to a worker like any notification, not sent in this request: a receiver that
        never answers must not hold a web process. Its outcome is in the delivery log."""
        test = Notification(topic="test", subject="Test from agent telemetry", text=f"Sent by {request.user.get_username()}.")
        channels = list(queryset)
        notify(test, channels)
        names = ", ".join(channel.name for channel in channels)
        self.message_user(
            request, f"Test notification queued for {names}: a worker sends it; see Deliveries for the outcome.", messages.SUCCESS
        )


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
        return request.user.has_perm("notifications.change_delivery")

    @admin.action(description="Retry the failed ones", permissions=["retry"])
    def retry(self, request, queryset):
        self.message_user(request, f"{retry_failed(queryset)} failed deliveries sent again.", messages.SUCCESS)
