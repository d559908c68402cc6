"""Traces: spans stored from the SDK or any OpenTelemetry exporter (runs.otlp), the model calls
their OpenTelemetry GenAI attributes describe (as LLM usage records), and a trace's waterfall."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from core.batch import Batch, MayActAs, Row
from runs import quality
from runs.models import Run, Span, SpanStatus
from runs.schemas import SpanIn

# OpenTelemetry's GenAI semantic conventions (older names second), and ours for what they lack.
MODEL = ("gen_ai.response.model", "gen_ai.request.model")
PROVIDER = ("gen_ai.provider.name", "gen_ai.system")
INPUT_TOKENS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
OUTPUT_TOKENS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
CACHE_READ_TOKENS = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens")
CACHE_WRITE_TOKENS = ("gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_creation_input_tokens")
OURS = {"workflow": "telemetry.workflow", "stage": "telemetry.stage", "tier": "telemetry.tier", "cost": "telemetry.cost"}
RUN_ATTRIBUTE = "telemetry.run_event_id"  # a span names its run (the run's event_id) with this


def _first(attributes: dict[str, Any], names: tuple[str, ...]) -> Any:
    return next((attributes[name] for name in names if attributes.get(name) is not None), None)


def ingest_spans(items: list, may_act_as: MayActAs) -> Batch:
    batch = Batch(items, SpanIn)
    batch.reject_forbidden_agents(may_act_as)
    named = {item.run_event_id for item in batch.valid.values() if item.run_event_id}
    runs = Run.objects.only("id", "event_id").in_bulk(named, field_name="event_id")

    def row(item: SpanIn) -> Row:
        fields = item.model_dump(exclude={"run_event_id"})
        fields["event_id"] = item.event_id
        fields["events"] = [event.model_dump(mode="json") for event in item.events]
        fields["run_id"] = runs[item.run_event_id].pk if item.run_event_id in runs else None
        return fields

    batch.store(Span, row, on_stored=lambda rows: _record_llm_calls(rows, runs))
    return batch


def _record_llm_calls(spans: list[Row], runs: dict[str, Run]) -> None:
    """The spans that describe a model call (a GenAI model attribute) become LLM usage records,
    priced from the price table unless they carry `telemetry.cost`."""
    event_ids = {run.pk: event_id for event_id, run in runs.items()}
    calls = []
    for span in spans:
        attributes = span["attributes"]
        model = _first(attributes, MODEL)
        if not model:
            continue
        call = {
            "event_id": f"span-{span['event_id']}",
            "timestamp": span["start_time"],
            "agent_name": span["agent_name"],
            "model": str(model),
            "provider": str(_first(attributes, PROVIDER) or ""),
            "task_type": str(attributes.get("gen_ai.operation.name") or ""),
            "input_tokens": _first(attributes, INPUT_TOKENS) or 0,
            "output_tokens": _first(attributes, OUTPUT_TOKENS) or 0,
            "cache_read_tokens": _first(attributes, CACHE_READ_TOKENS) or 0,
            "cache_write_tokens": _first(attributes, CACHE_WRITE_TOKENS) or 0,
            "latency_ms": int((span["end_time"] - span["start_time"]).total_seconds() * 1000),
            "success": span["status"] != SpanStatus.ERROR,
            "run_event_id": event_ids.get(span["run_id"]),
        }
        call.update({field: attributes[name] for field, name in OURS.items() if attributes.get(name) is not None})
        calls.append(call)
    if calls:
        quality.ingest_usage(calls, may_act_as=lambda agent: True)  # the spans' agents were checked


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


def recent_traces(limit: int = 100, agent: str = "") -> list[dict[str, Any]]:
    """The latest traces of the last week: when, how long, how many spans and errors, and the
    name of their root span."""
    spans = Span.objects.filter(start_time__gte=timezone.now() - RECENT)
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
