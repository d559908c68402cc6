"""The analytics page (/analytics/, for staff who may view runs, usage and feedback): charts of
the filtered runs, usage and feedback, and their export as CSV, JSON or an XLSX workbook."""

from __future__ import annotations

import tempfile

from django.http import FileResponse, Http404, StreamingHttpResponse
from django.views.decorators.http import require_GET

from core import exports
from core.views import staff_only, staff_page
from quality.analytics import figures, period_of
from quality.exports import KINDS

CONTENT_TYPES = {"csv": "text/csv", "json": "application/json"}
# The page and its exports show runs, LLM usage and feedback.
PERMISSIONS = ("runs.view_run", "quality.view_llmusage", "quality.view_feedbackentry")


@require_GET
@staff_only(*PERMISSIONS)
def analytics_page(request):
    period = period_of(request.GET)
    agents = period.run_days().values_list("agent_name", flat=True).distinct().order_by("agent_name")[:200]
    return staff_page(
        request,
        "quality/analytics.html",
        figures=figures(period),
        filters=period,
        agents=list(agents) if not period.agent else [],
        query=request.GET.urlencode(),
    )


@require_GET
@staff_only(*PERMISSIONS)
def analytics_export(request, fmt: str):
    """The filtered runs as CSV or JSON (streamed); as XLSX, a workbook with the runs, the LLM
    usage and the feedback on three sheets."""
    period = period_of(request.GET)
    name = f"telemetry-{period.start}-{period.end}"
    if fmt == "xlsx":
        sheets = {
            kind: (KINDS[kind].columns, exports.rows(KINDS[kind], queryset))
            for kind, queryset in (("runs", period.runs()), ("usage", period.usage()), ("feedback", period.feedback()))
        }
        # openpyxl writes rows as they come; FileResponse closes (and so deletes) the file once sent.
        workbook = tempfile.TemporaryFile()  # noqa: SIM115
        exports.write_xlsx(sheets, workbook)
        workbook.seek(0)
        return FileResponse(workbook, as_attachment=True, filename=f"{name}.xlsx")
    if fmt not in CONTENT_TYPES:
        raise Http404(f"No export format {fmt!r}.")
    runs = KINDS["runs"]
    records = exports.rows(runs, period.runs().order_by("-created_at", "-id"))
    chunks = exports.csv_lines(runs.columns, records) if fmt == "csv" else exports.json_chunks(records)
    response = StreamingHttpResponse(chunks, content_type=CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return response
