"""Spans sent over OTLP/HTTP to an OpenTelemetry Collector (or any OTLP endpoint), the new ones
each time: beat runs it when OTLP_EXPORT_ENDPOINT is set (operations.tasks.export_otlp)."""

from __future__ import annotations

from datetime import datetime

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from core.otlp import attributes, nanos, post
from traces.models import ExportMark, Span
from traces.otlp import AGENT_ATTRIBUTE, KINDS, STATUSES

SPANS_PER_EXPORT = 5000


SPAN_KINDS = {kind: number for number, kind in KINDS.items() if isinstance(number, int) and number}
STATUS_CODES = {status: number for number, status in STATUSES.items() if isinstance(number, int)}


def traces_request(spans: list[Span]) -> ExportTraceServiceRequest:
    """The spans, one resource per agent and service."""
    request = ExportTraceServiceRequest()
    resources: dict[tuple[str, str], trace_pb2.ScopeSpans] = {}
    for span in spans:
        key = (span.agent_name, span.service_name)
        if key not in resources:
            resource_spans = request.resource_spans.add()
            resource_spans.resource.attributes.extend(
                attributes({"service.name": span.service_name or span.agent_name, AGENT_ATTRIBUTE: span.agent_name})
            )
            resources[key] = resource_spans.scope_spans.add()
            resources[key].scope.name = "agent-telemetry"
        out = resources[key].spans.add()
        out.trace_id, out.span_id = bytes.fromhex(span.trace_id), bytes.fromhex(span.span_id)
        if span.parent_span_id:
            out.parent_span_id = bytes.fromhex(span.parent_span_id)
        out.name, out.kind = span.name, SPAN_KINDS.get(span.span_kind, 1)
        out.start_time_unix_nano, out.end_time_unix_nano = nanos(span.start_time), nanos(span.end_time)
        out.attributes.extend(attributes(span.attributes))
        for event in span.events:
            added = out.events.add()
            added.name = event.get("name", "")
            added.time_unix_nano = nanos(datetime.fromisoformat(event["timestamp"])) if event.get("timestamp") else 0
            added.attributes.extend(attributes(event.get("attributes") or {}))
        out.status.code, out.status.message = STATUS_CODES.get(span.status, 0), span.status_message
    return request


def export_spans(client: httpx.Client, base: str) -> int:
    """Send the spans stored since the last export (up to SPANS_PER_EXPORT, oldest first) to
    <base>/v1/traces; how many. Spans the collector refuses are sent again next time: the mark
    moves only once they are accepted. Best effort: a span whose transaction commits after a later
    one's was exported is skipped."""
    mark, _ = ExportMark.objects.get_or_create(name="otlp-spans")
    spans = list(Span.objects.filter(id__gt=mark.position).order_by("id")[:SPANS_PER_EXPORT])
    if spans:
        post(client, f"{base}/v1/traces", traces_request(spans))
        ExportMark.objects.filter(pk=mark.pk, position=mark.position).update(position=spans[-1].id)
    return len(spans)
