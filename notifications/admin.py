from django.contrib import admin, messages

from notifications.forwarding import start_forwarding
from notifications.models import Delivery, Notification, NotificationChannel
from notifications.sending import DELIVERY_ERRORS, deliver
from notifications.services import retry_failed


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

    @admin.action(description="Send a test notification now", permissions=["change"])
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
        return request.user.has_perm("notifications.change_delivery")

    @admin.action(description="Retry the failed ones", permissions=["retry"])
    def retry(self, request, queryset):
        self.message_user(request, f"{retry_failed(queryset)} failed deliveries sent again.", messages.SUCCESS)
