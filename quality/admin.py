from django.contrib import admin
from django.db import transaction

from quality.models import ChangedDay, FeedbackEntry, LlmUsage, ModelPrice, TemplateFeedback


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    """The price table usage records are costed from when they arrive without a cost."""

    list_display = [
        "model",
        "provider",
        "tier",
        "input_per_mtok",
        "output_per_mtok",
        "cache_read_per_mtok",
        "cache_write_per_mtok",
        "updated_at",
    ]
    list_editable = ["tier", "input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok"]
    list_filter = ["tier", "provider"]
    search_fields = ["model"]


class RecordAdmin(admin.ModelAdmin):
    """Records agents send: looked at, filtered, deleted; neither added nor edited here."""

    show_full_result_count = False
    list_per_page = 100

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(LlmUsage)
class LlmUsageAdmin(RecordAdmin):
    list_display = [
        "timestamp",
        "agent_name",
        "workflow",
        "stage",
        "model",
        "tier",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cost",
        "latency_ms",
        "success",
        "fallback",
    ]
    list_filter = ["tier", "success", "fallback", ("timestamp", admin.DateFieldListFilter)]
    search_fields = ["=event_id", "^agent_name", "^model", "^workflow"]
    raw_id_fields = ["run"]

    def delete_queryset(self, request, queryset) -> None:
        """Deleting usage notes its days, whose rollups change (quality.rollups)."""
        with transaction.atomic():
            ChangedDay.note(*queryset.datetimes("timestamp", "day"))
            super().delete_queryset(request, queryset)


@admin.register(FeedbackEntry)
class FeedbackEntryAdmin(RecordAdmin):
    list_display = ["timestamp", "workflow_name", "stage_name", "tier", "quality_score", "agent_name"]
    list_filter = ["tier", ("timestamp", admin.DateFieldListFilter)]
    search_fields = ["=event_id", "^workflow_name", "^stage_name"]


@admin.register(TemplateFeedback)
class TemplateFeedbackAdmin(RecordAdmin):
    list_display = ["timestamp", "template_id", "good", "agent_name"]
    list_filter = ["good"]
    search_fields = ["^template_id"]
