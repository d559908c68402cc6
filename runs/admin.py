from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db import transaction
from django.forms.models import BaseInlineFormSet
from django.http import StreamingHttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from core import exports
from runs import services
from runs.changes import runs_changed
from runs.deliveries import run_deliveries
from runs.exports import RUNS
from runs.forms import EDITABLE, BulkEditForm, RunChangeForm
from runs.models import Run, RunEvent, RunStatus

INLINE_EVENTS = 50
PER_PAGE, PAGE_SIZES = "per_page", [10, 25, 50, 100, 250, 500]


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


class RunChangeList(ChangeList):
    """The runs list, its page size chosen by `?per_page=` (10 to 500)."""

    page_sizes = PAGE_SIZES

    def __init__(self, request, *args):
        # ModelAdmin passes list_per_page as the ninth argument, after the request.
        args = (*args[:7], page_size(request, default=args[7]), *args[8:])
        super().__init__(request, *args)

    def get_filters_params(self, params=None):
        params = super().get_filters_params(params)
        params.pop(PER_PAGE, None)
        return params


def page_size(request, default: int) -> int:
    try:
        return max(PAGE_SIZES[0], min(PAGE_SIZES[-1], int(request.GET.get(PER_PAGE, ""))))
    except ValueError:
        return default


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["run_id", "agent_name", "job_type", "status", "start_time", "duration_ms", "items_succeeded", "items_failed"]
    list_filter = ["status", "job_type", "agent_name", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["=event_id", "=run_id", "^agent_name", "^job_type", "git_commit_hash"]
    list_per_page = 100
    list_max_show_all = 1000
    show_full_result_count = False
    ordering = ["-created_at", "-id"]
    form = RunChangeForm
    fieldsets = [
        (None, {"fields": ["event_id", "run_id", "parent_run_id", "agent_name", "agent_owner", "job_type", "trigger_type"]}),
        ("Outcome (editable: saved as PATCH /api/v1/runs/{event_id} saves it)", {"fields": EDITABLE}),
        ("Times and counts", {"fields": ["start_time", "created_at", "updated_at", "items_discovered"]}),
        ("Input", {"fields": ["input_summary", "source_ref", "target_ref", "insight_id"]}),
        (
            "Product",
            {"fields": ["product", "product_family", "platform", "subdomain", "website", "website_section", "item_name"]},
        ),
        (
            "Git",
            {
                "fields": [
                    "git_repo",
                    "git_branch",
                    "git_run_tag",
                    "git_commit_hash",
                    "git_commit_source",
                    "git_commit_author",
                    "git_commit_timestamp",
                    "commit_url",
                ]
            },
        ),
        ("Where", {"fields": ["host", "environment"]}),
        ("Forwarded to", {"fields": ["forwarded"]}),
    ]
    inlines = [RunEventInline]
    actions = ["mark_cancelled", "bulk_edit", "export_csv", "export_json"]

    def get_readonly_fields(self, request, obj=None):
        """Everything but what PATCH may set: a run is the agent's record."""
        return [name for _, options in self.fieldsets for name in options["fields"] if name not in EDITABLE]

    @admin.display(description="Channels")
    def forwarded(self, run: Run) -> str:
        """Per channel forwarding the run's latest announcement, its batch delivery's status."""
        found = run_deliveries(run)
        if not found:
            return "No channel forwards run.started or run.ended."
        return format_html_join(
            mark_safe("<br>"),
            "{}: {} {} {}",
            [
                (
                    row["channel"],
                    row["event_type"],
                    row["status"].replace("_", " "),
                    f"({row['delivered_at']})" if row["delivered_at"] else "",
                )
                for row in found
            ],
        )

    def has_add_permission(self, request) -> bool:
        return False  # runs come from agents (the API, the SDK, the importers)

    def save_model(self, request, obj, form, change) -> None:
        """The changed fields, applied to the run as stored now, as PATCH applies them: the
        duration derived from a new end time, `run.ended` published when it stops running."""
        with transaction.atomic():
            services.update_run(Run.objects.select_for_update().get(pk=obj.pk), form.patch)

    def get_changelist(self, request, **kwargs):
        return RunChangeList

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
                runs, changes = list(queryset.select_for_update()), services.RunChanges()
                for run in runs:
                    services.update_run(run, form.cleaned_data["patch"], changes)
                changes.write()
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
