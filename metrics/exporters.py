"""Exports of the metric series: as JSON files in a directory, rotated; and over OTLP/HTTP to an
OpenTelemetry Collector (or any OTLP endpoint). Beat runs both when they are configured
(METRICS_JSON_EXPORT_DIR; OTLP_EXPORT_ENDPOINT, with the spans: operations.tasks.export_otlp)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
from django.utils import timezone
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from core.otlp import attributes, nanos, post
from metrics.models import MetricSeries, MetricType
from metrics.services import BUCKETS

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


def metrics_request() -> ExportMetricsServiceRequest:
    """Every series, cumulative (as /metrics shows them)."""
    request = ExportMetricsServiceRequest()
    scope = request.resource_metrics.add()
    scope.resource.attributes.extend(attributes({"service.name": "agent-telemetry-server"}))
    metrics = scope.scope_metrics.add()
    metrics.scope.name = "agent-telemetry"
    now = nanos(timezone.now())
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
        labels = attributes(series.labels)
        if series.metric_type == MetricType.HISTOGRAM:
            point = metric.histogram.data_points.add(time_unix_nano=now, count=series.count, sum=series.sum)
            point.bucket_counts.extend(series.buckets)
            point.explicit_bounds.extend(BUCKETS[:-1])
        else:
            container = metric.sum if series.metric_type == MetricType.COUNTER else metric.gauge
            point = container.data_points.add(time_unix_nano=now, as_double=series.value)
        point.attributes.extend(labels)
    return request


def export_metrics(client: httpx.Client, base: str) -> int:
    """Send every metric series to <base>/v1/metrics; how many metrics."""
    metrics = metrics_request()
    count = len(metrics.resource_metrics[0].scope_metrics[0].metrics)
    if count:
        post(client, f"{base}/v1/metrics", metrics)
    return count
