"""Exports (seed 004's exporters): the metric series as JSON files in a directory, rotated; and
spans and metrics over OTLP/HTTP to an OpenTelemetry Collector (or any OTLP endpoint). Beat runs
both when they are configured (METRICS_JSON_EXPORT_DIR, OTLP_EXPORT_ENDPOINT)."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from django.utils import timezone
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from runs.metrics import BUCKETS
from runs.models import ExportMark, MetricSeries, MetricType, Span
from runs.otlp import AGENT_ATTRIBUTE, KINDS, PROTOBUF, STATUSES

SPANS_PER_EXPORT = 5000
JSON_PREFIX = "metrics-"


def series_snapshot() -> list[dict[str, Any]]:
    """Every series as it stands: a counter's total, a gauge's value, a histogram's buckets."""
    return [
        {
            "name": series.name,
            "type": series.metric_type,
            "labels": series.labels,
            "value": series.value,
            "count": series.count,
            "sum": series.sum,
            **({"buckets": dict(zip(map(str, BUCKETS), series.buckets, strict=True))} if series.buckets else {}),
            "last_at": series.last_at.isoformat() if series.last_at else None,
        }
        for series in MetricSeries.objects.order_by("name", "labels_key").iterator()
    ]


def export_json(directory: Path, max_files: int) -> Path:
    """Write the series to metrics-<UTC time>.json in `directory` (whole, or not at all), and keep
    only the newest `max_files` such files."""
    directory.mkdir(parents=True, exist_ok=True)
    now = timezone.now()
    path = directory / f"{JSON_PREFIX}{now:%Y%m%dT%H%M%S%fZ}.json"
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps({"exported_at": now.isoformat(), "series": series_snapshot()}, indent=1))
    os.replace(partial, path)
    for old in sorted(directory.glob(f"{JSON_PREFIX}*.json"))[:-max_files]:
        old.unlink(missing_ok=True)
    return path


def _any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list):
        found = AnyValue()
        found.array_value.values.extend(_any_value(item) for item in value)
        return found
    if isinstance(value, dict):
        found = AnyValue()
        found.kvlist_value.values.extend(_attributes(value))
        return found
    return AnyValue(string_value="" if value is None else str(value))


def _attributes(values: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=str(key), value=_any_value(value)) for key, value in values.items()]


def _nanos(moment) -> int:
    return int(moment.timestamp() * 1e9)


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
                _attributes({"service.name": span.service_name or span.agent_name, AGENT_ATTRIBUTE: span.agent_name})
            )
            resources[key] = resource_spans.scope_spans.add()
            resources[key].scope.name = "agent-telemetry"
        out = resources[key].spans.add()
        out.trace_id, out.span_id = bytes.fromhex(span.trace_id), bytes.fromhex(span.span_id)
        if span.parent_span_id:
            out.parent_span_id = bytes.fromhex(span.parent_span_id)
        out.name, out.kind = span.name, SPAN_KINDS.get(span.span_kind, 1)
        out.start_time_unix_nano, out.end_time_unix_nano = _nanos(span.start_time), _nanos(span.end_time)
        out.attributes.extend(_attributes(span.attributes))
        for event in span.events:
            added = out.events.add()
            added.name = event.get("name", "")
            added.time_unix_nano = _nanos(datetime.fromisoformat(event["timestamp"])) if event.get("timestamp") else 0
            added.attributes.extend(_attributes(event.get("attributes") or {}))
        out.status.code, out.status.message = STATUS_CODES.get(span.status, 0), span.status_message
    return request


def metrics_request() -> ExportMetricsServiceRequest:
    """Every series, cumulative (as /metrics shows them)."""
    request = ExportMetricsServiceRequest()
    scope = request.resource_metrics.add()
    scope.resource.attributes.extend(_attributes({"service.name": "agent-telemetry-server"}))
    metrics = scope.scope_metrics.add()
    metrics.scope.name = "agent-telemetry"
    now = _nanos(timezone.now())
    by_name: dict[str, metrics_pb2.Metric] = {}
    for series in MetricSeries.objects.order_by("name", "labels_key").iterator():
        metric = by_name.get(series.name)
        if metric is None:
            metric = by_name[series.name] = metrics.metrics.add(name=series.name)
            if series.metric_type == MetricType.COUNTER:
                metric.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
                metric.sum.is_monotonic = True
            elif series.metric_type == MetricType.HISTOGRAM:
                metric.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
        attributes = _attributes(series.labels)
        if series.metric_type == MetricType.HISTOGRAM:
            point = metric.histogram.data_points.add(time_unix_nano=now, count=series.count, sum=series.sum)
            point.bucket_counts.extend(series.buckets)
            point.explicit_bounds.extend(BUCKETS[:-1])
        else:
            container = metric.sum if series.metric_type == MetricType.COUNTER else metric.gauge
            point = container.data_points.add(time_unix_nano=now, as_double=series.value)
        point.attributes.extend(attributes)
    return request


def _post(client: httpx.Client, url: str, message) -> None:
    client.post(url, content=message.SerializeToString(), headers={"Content-Type": PROTOBUF}).raise_for_status()


def export_otlp(endpoint: str, headers: dict[str, str], timeout: float = 10.0) -> dict[str, int]:
    """Send the spans stored since the last export (up to SPANS_PER_EXPORT, oldest first) to
    <endpoint>/v1/traces and every metric series to <endpoint>/v1/metrics; how many of each. Spans
    the collector refuses are sent again next time: the mark moves only once they are accepted.
    Best effort: a span whose transaction commits after a later one's was exported is skipped."""
    base = endpoint.rstrip("/")
    mark, _ = ExportMark.objects.get_or_create(name="otlp-spans")
    spans = list(Span.objects.filter(id__gt=mark.position).order_by("id")[:SPANS_PER_EXPORT])
    metrics = metrics_request()
    with httpx.Client(headers=headers, timeout=timeout) as client:
        if spans:
            _post(client, f"{base}/v1/traces", traces_request(spans))
            ExportMark.objects.filter(pk=mark.pk, position=mark.position).update(position=spans[-1].id)
        series = len(metrics.resource_metrics[0].scope_metrics[0].metrics)
        if series:
            _post(client, f"{base}/v1/metrics", metrics)
    return {"spans": len(spans), "metrics": series}
