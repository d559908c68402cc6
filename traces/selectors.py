"""A trace's waterfall and the latest traces: what the trace pages show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from traces.models import Span, SpanStatus


@dataclass
class Bar:
    """A span in the waterfall: where its bar starts and how long it is (percent of the trace),
    and how deep it sits under the root."""

    span: Span
    depth: int
    offset: float
    width: float


def waterfall(trace_id: str) -> list[Bar]:
    """The trace's spans, each under its parent (in start order), placed on the trace's timeline.
    A span whose parent was not received shows at the top level."""
    spans = list(Span.objects.filter(trace_id=trace_id).order_by("start_time", "id"))
    if not spans:
        return []
    start = min(span.start_time for span in spans)
    total = max((max(span.end_time for span in spans) - start).total_seconds(), 1e-6)
    ids = {span.span_id for span in spans}
    children: dict[str, list[Span]] = {}
    for span in spans:
        children.setdefault(span.parent_span_id if span.parent_span_id in ids else "", []).append(span)
    bars: list[Bar] = []

    def place(parent: str, depth: int) -> None:
        for span in children.get(parent, []):
            offset = (span.start_time - start).total_seconds() / total * 100
            bars.append(Bar(span, depth, offset, max(span.duration_ms / 1000 / total * 100, 0.2)))
            if span.span_id != parent:
                place(span.span_id, depth + 1)

    place("", 0)
    return bars


RECENT = timedelta(days=7)


def recent_traces(limit: int = 100, agent: str = "", run: str = "") -> list[dict[str, Any]]:
    """The latest traces of the last week (of one run's spans: whenever they were): when, how
    long, how many spans and errors, and the name of their root span. `run` is its event_id."""
    spans = Span.objects.filter(run__event_id=run) if run else Span.objects.filter(start_time__gte=timezone.now() - RECENT)
    if agent:
        spans = spans.filter(agent_name=agent)
    found = list(
        spans.values("trace_id")
        .annotate(
            start=Min("start_time"),
            end=Max("end_time"),
            spans=Count("id"),
            errors=Count("id", filter=Q(status=SpanStatus.ERROR)),
            agent=Min("agent_name"),
        )
        .order_by("-start")[:limit]
    )
    roots = dict(
        Span.objects.filter(trace_id__in=[trace["trace_id"] for trace in found], parent_span_id="").values_list(
            "trace_id", "name"
        )
    )
    for trace in found:
        trace["name"] = roots.get(trace["trace_id"], "(root span not received)")
        trace["duration_ms"] = (trace["end"] - trace["start"]).total_seconds() * 1000
    return found
