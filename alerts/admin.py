from django.contrib import admin, messages

from alerts import services
from alerts.models import Alert, AlertRule


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "agents", "threshold", "enabled", "open_alerts"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name"]
    filter_horizontal = ["channels"]
    actions = ["evaluate_now"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "enabled", "channels"]}),
        ("Condition", {"fields": ["agents", "job_type", "threshold", "window_minutes", "min_runs", "per", "event_type"]}),
    ]

    @admin.display(description="open alerts")
    def open_alerts(self, rule: AlertRule) -> int:
        return rule.alerts.filter(closed_at__isnull=True).count()

    @admin.action(description="Evaluate now", permissions=["change"])
    def evaluate_now(self, request, queryset):
        for rule in queryset:
            opened, closed = services.evaluate(rule)
            self.message_user(request, f"{rule}: {opened} opened, {closed} closed", messages.SUCCESS)


class OpenFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("open", "open"), ("closed", "closed")]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(closed_at__isnull=self.value() == "open")
        return queryset


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["summary", "rule", "subject", "opened_at", "closed_at"]
    list_filter = [OpenFilter, "rule__kind", "rule"]
    search_fields = ["subject", "summary"]
    date_hierarchy = "opened_at"
    readonly_fields = ["rule", "subject", "summary", "details", "opened_at", "closed_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
