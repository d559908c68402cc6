"""/metrics: every series agents sent, in the Prometheus text format."""

from __future__ import annotations

import json
from functools import lru_cache
from itertools import accumulate, groupby
from operator import itemgetter

from prometheus_client.utils import floatToGoString

from metrics.models import MetricSeries, MetricType
from metrics.services import BUCKETS

BUCKET_TEXT = [floatToGoString(bound) for bound in BUCKETS]


def sent_series_text() -> str:
    """/metrics: every series agents sent, under its own name, in the Prometheus text format.

    Written here rather than through prometheus_client's exposition, which escapes and validates
    every label of every sample: on ten thousand series that was two thirds of a scrape. Names
    and label names were validated when the points came in, and each series' label text is
    rendered once per process from its canonical JSON (sorted keys), then reused. The tests read
    this text back with prometheus_client's parser."""
    series = MetricSeries.objects.order_by("name", "labels_key")
    buckets = dict(series.filter(metric_type=MetricType.HISTOGRAM).values_list("id", "buckets"))
    lines = []
    for name, group in groupby(
        series.values_list("name", "metric_type", "labels_key", "value", "sum", "id").iterator(), itemgetter(0)
    ):
        for index, (_, kind, labels_key, value, total, pk) in enumerate(group):
            labels = _label_text(labels_key)
            if kind == MetricType.COUNTER:
                exposed = f"{name.removesuffix('_total')}_total"
                samples = [(exposed, labels, value)]
            elif kind == MetricType.GAUGE:
                exposed = name
                samples = [(name, labels, value)]
            else:
                exposed, joined = name, f"{labels}," if labels else ""
                counts = list(accumulate(buckets[pk]))
                samples = [
                    (f"{name}_bucket", f'{joined}le="{bound}"', count) for bound, count in zip(BUCKET_TEXT, counts, strict=True)
                ]
                samples += [(f"{name}_count", labels, counts[-1]), (f"{name}_sum", labels, total)]
            if index == 0:
                lines.append(f"# HELP {exposed} {name} ({kind}, from agents)\n# TYPE {exposed} {kind}\n")
            lines += [f"{sample}{{{text}}} {floatToGoString(number)}\n" if text else f"{sample} {floatToGoString(number)}\n"
                      for sample, text, number in samples]  # fmt: skip
    return "".join(lines)


@lru_cache(maxsize=100_000)
def _label_text(labels_key: str) -> str:
    """`a="x",b="y"` of a series' labels (canonical JSON, sorted keys), values escaped."""
    return ",".join(f'{name}="{_escaped(value)}"' for name, value in json.loads(labels_key).items())


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
