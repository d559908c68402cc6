import json

import pydantic
from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.forms.models import BaseInlineFormSet
from django.http import StreamingHttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from core import exports
from core.api import validation_fields
from runs import services
from runs.changes import runs_changed
from runs.exports import RUNS
from runs.models import Run, RunEvent, RunStatus
from runs.schemas import RunPatch

INLINE_EVENTS = 50


class LatestEventsFormSet(BaseInlineFormSet):
    """Only the latest events: a run may hold many thousands."""

    def get_queryset(self):
        return super().get_queryset().order_by("-timestamp", "-id")[:INLINE_EVENTS]


class RunEventInline(admin.TabularInline):
    model = RunEvent
    formset = LatestEventsFormSet
    fields = ["timestamp", "event_type", "payload", "event_id"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    verbose_name_plural = f"events (latest {INLINE_EVENTS})"


def _download(rows, content_type: str, extension: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(rows, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="runs-{timezone.now():%Y%m%d-%H%M%S}.{extension}"'
    return response


class BulkEditForm(forms.Form):
    """One of the fields PATCH may set, to one value for every selected run."""

    field = forms.ChoiceField(choices=[(name, name.replace("_", " ")) for name in RunPatch.model_fields])
    value = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Empty clears a text, time or JSON field. Times in ISO 8601; JSON fields take a JSON object.",
    )

    def clean(self):
        cleaned = super().clean()
        field, value = cleaned.get("field"), (cleaned.get("value") or "").strip()
        if not field:
            return cleaned
        if field.endswith("_json") and value:
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise forms.ValidationError({"value": f"Not JSON: {exc}"}) from None
        try:
            cleaned["patch"] = RunPatch.model_validate({field: value if value != "" else None})
        except pydantic.ValidationError as exc:
            problems = [problem for found in validation_fields(exc).values() for problem in found]
            raise forms.ValidationError({"value": "; ".join(problems)}) from None
        return cleaned


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["run_id", "agent_name", "job_type", "status", "start_time", "duration_ms", "items_succeeded", "items_failed"]
    list_filter = ["status", "job_type", "agent_name", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["=event_id", "=run_id", "^agent_name", "^job_type", "git_commit_hash"]
    list_per_page = 100
    list_max_show_all = 1000
    show_full_result_count = False
    ordering = ["-created_at", "-id"]
    readonly_fields = ["event_id", "run_id", "created_at", "updated_at", "commit_url"]
    inlines = [RunEventInline]
    actions = ["mark_cancelled", "bulk_edit", "export_csv", "export_json"]

    def delete_queryset(self, request, queryset) -> None:
        """Deleted runs' days are announced: their figures change."""
        with transaction.atomic():
            runs_changed.send(Run, moments=list(queryset.datetimes("created_at", "day")))
            super().delete_queryset(request, queryset)

    @admin.action(description="Mark selected running runs as cancelled", permissions=["change"])
    def mark_cancelled(self, request, queryset):
        count = services.end_running(queryset, RunStatus.CANCELLED, f"Cancelled in the admin by {request.user.get_username()}")
        self.message_user(request, f"Cancelled {count} running run(s); the others had ended already.", messages.SUCCESS)

    @admin.action(description="Edit a field of the selected runs", permissions=["change"])
    def bulk_edit(self, request, queryset):
        """A form and a preview first; on "apply", each run is updated as PATCH updates it (its
        lifecycle event published, its duration derived)."""
        form = BulkEditForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            with transaction.atomic():
                runs = list(queryset.select_for_update())
                for run in runs:
                    services.update_run(run, form.cleaned_data["patch"])
            field = form.cleaned_data["field"]
            self.message_user(request, f"Set {field} of {len(runs)} run(s).", messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Edit a field of the selected runs",
            "opts": self.model._meta,
            "form": form,
            "runs": queryset[:20],
            "count": queryset.count(),
            "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
        }
        return TemplateResponse(request, "admin/runs/run/bulk_edit.html", context)

    @admin.action(description="Export selected runs as CSV", permissions=["view"])
    def export_csv(self, request, queryset):
        return _download(exports.csv_lines(RUNS.columns, exports.rows(RUNS, queryset)), "text/csv", "csv")

    @admin.action(description="Export selected runs as JSON", permissions=["view"])
    def export_json(self, request, queryset):
        return _download(exports.json_chunks(exports.rows(RUNS, queryset)), "application/json", "json")


@admin.register(RunEvent)
class RunEventAdmin(admin.ModelAdmin):
    list_display = ["event_type", "run", "timestamp"]
    list_select_related = ["run"]
    list_filter = ["event_type", ("timestamp", admin.DateFieldListFilter)]
    search_fields = ["=event_id", "=run__event_id", "^event_type"]
    raw_id_fields = ["run"]
    show_full_result_count = False
    list_per_page = 100
