"""The trace pages (staff who may view spans): the latest traces, and one trace as a waterfall."""

from __future__ import annotations

from django.http import Http404
from django.views.decorators.http import require_GET

from core.views import staff_only, staff_page
from traces import selectors

PERMISSIONS = ("traces.view_span",)  # the pages show spans


@require_GET
@staff_only(*PERMISSIONS)
def traces_page(request):
    """The latest traces (of one agent with ?agent=, of one run's spans with ?run=its event_id)."""
    agent, run = ((request.GET.get(name) or "").strip()[:200] for name in ("agent", "run"))
    found = selectors.recent_traces(agent=agent, run=run)
    return staff_page(request, "traces/traces.html", title="Traces", agent=agent, run=run, traces=found)


@require_GET
@staff_only(*PERMISSIONS)
def trace_page(request, trace_id: str):
    """One trace as a waterfall: each span under its parent, as a bar on the trace's timeline."""
    bars = selectors.waterfall(trace_id.lower())
    if not bars:
        raise Http404(f"No spans of trace {trace_id}.")
    return staff_page(request, "traces/trace.html", title=f"Trace {trace_id}", trace_id=trace_id, bars=bars)
