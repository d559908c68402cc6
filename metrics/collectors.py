"""/metrics: every series agents sent, in the Prometheus text format."""

from __future__ import annotations

from core.fastpaths.prometheus_text import series_text
from metrics.models import MetricSeries, MetricType
from metrics.services import BUCKETS


def sent_series_text() -> str:
    """Every series agents sent, under its own name. Written by core.fastpaths.prometheus_text
    rather than prometheus_client's exposition, which escapes and validates every label of every
    sample (names and label names were validated when the points came in). The tests read this
    text back with prometheus_client's parser."""
    series = MetricSeries.objects.order_by("name", "labels_key")
    buckets = dict(series.filter(metric_type=MetricType.HISTOGRAM).values_list("id", "buckets"))
    rows = series.values_list("name", "metric_type", "labels_key", "value", "sum", "id").iterator()
    return series_text(rows, buckets.__getitem__, BUCKETS, "from agents")
