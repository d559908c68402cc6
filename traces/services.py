"""Spans stored from the SDK or any OpenTelemetry exporter (traces.otlp), and the model calls
their OpenTelemetry GenAI attributes describe, recorded as LLM usage."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from core.batch import Batch, MayActAs, Row, purge
from quality import services as quality
from runs import selectors as runs
from traces.models import Span, SpanStatus
from traces.schemas import SpanIn

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
    found = runs.by_event_id(named)

    def row(item: SpanIn) -> Row:
        fields = item.model_dump(exclude={"run_event_id"})
        fields["event_id"] = item.event_id
        fields["events"] = [event.model_dump(mode="json") for event in item.events]
        fields["run_id"] = found[item.run_event_id].pk if item.run_event_id in found else None
        return fields

    batch.store(Span, row, on_stored=lambda rows: _record_llm_calls(rows, found))
    return batch


def _record_llm_calls(spans: list[Row], runs_named: dict[str, Any]) -> None:
    """The spans that describe a model call (a GenAI model attribute) become LLM usage records,
    priced from the price table unless they carry `telemetry.cost`."""
    event_ids = {run.pk: event_id for event_id, run in runs_named.items()}
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


def purge_old_spans(days: float) -> int:
    """Spans (their events inside) that started more than `days` ago; how many."""
    return purge(Span.objects.filter(start_time__lt=timezone.now() - timedelta(days=days)))
