"""Metrics agents send (seed 004) and what /metrics shows of them and of runs and LLM usage.

Each point is stored (the query API reads points) and added to its series in the same
transaction: a counter's total, a gauge's latest value, a histogram's bucket counts. /metrics
reads the series, so every web process serves the same figures.
"""

from __future__ import annotations

import bisect
import json
import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import accumulate, groupby
from operator import attrgetter, itemgetter
from typing import Any

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connections, router, transaction
from django.db.models import BigIntegerField, Count, Func, Max, Min, Sum
from django.utils import timezone
from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.utils import floatToGoString

from core.batch import Batch, MayActAs, Row, insert_rows
from runs import rollups
from runs.models import MetricMinute, MetricPoint, MetricSeries, MetricType, RunDay, UsageDay
from runs.schemas import MetricIn, MetricQuery

BUCKETS = Histogram.DEFAULT_BUCKETS  # upper bounds in seconds, the last +Inf
BUCKET_TEXT = [floatToGoString(bound) for bound in BUCKETS]


def ingest_metrics(items: list, may_act_as: MayActAs) -> Batch:
    batch = Batch(items, MetricIn)
    batch.reject_forbidden_agents(may_act_as)
    with transaction.atomic():
        series = _series_of(batch)

        def row(item: MetricIn) -> Row:
            found = series[item.series_key]
            return {"event_id": item.event_id, "series_id": found.pk, "timestamp": item.timestamp,
                    "agent_name": item.agent_name, "value": item.value}  # fmt: skip

        by_id = {found.pk: found for found in series.values()}
        batch.store(MetricPoint, row, on_stored=lambda rows: _add(rows, by_id))
    return batch


def _series_of(batch: Batch) -> dict[tuple[str, str], MetricSeries]:
    """The series of the batch's valid items, created if new and locked till the transaction
    ends. Items are rejected whose metric_type differs from their metric's, or that would give a metric
    more than METRICS_MAX_SERIES series (label sets)."""
    wanted = {item.series_key: item for item in batch.valid.values()}
    names = {name for name, _ in wanted}
    existing = MetricSeries.objects.filter(name__in=names)
    kinds = dict(existing.values_list("name", "metric_type").distinct())
    sizes = dict(existing.values("name").annotate(n=Count("id")).values_list("name", "n"))
    known = set(existing.filter(labels_key__in={key for _, key in wanted}).values_list("name", "labels_key"))
    new = []
    for index, item in list(batch.valid.items()):
        pair = item.series_key
        kind = kinds.setdefault(item.name, item.metric_type)
        if kind != item.metric_type:
            batch.reject(index, "type_mismatch", f"Metric '{item.name}' is a {kind}, not a {item.metric_type}.")
        elif pair not in known:
            if sizes.get(item.name, 0) >= settings.METRICS_MAX_SERIES:
                message = f"Metric '{item.name}' has {settings.METRICS_MAX_SERIES} label sets already (METRICS_MAX_SERIES)."
                batch.reject(index, "too_many_series", message)
                continue
            known.add(pair)
            sizes[item.name] = sizes.get(item.name, 0) + 1
            new.append(
                MetricSeries(name=item.name, labels_key=pair[1], labels=item.labels, metric_type=kind, buckets=_empty(kind))
            )
    # Always in one order (new ones by name and labels, existing ones by id): batches that share
    # series then wait for each other instead of deadlocking.
    MetricSeries.objects.bulk_create(sorted(new, key=attrgetter("name", "labels_key")), ignore_conflicts=True)
    locked = MetricSeries.objects.select_for_update().filter(name__in=names, labels_key__in={key for _, key in wanted})
    return {(found.name, found.labels_key): found for found in locked.order_by("id")}


def _empty(metric_type: str) -> list[int]:
    return [0] * len(BUCKETS) if metric_type == MetricType.HISTOGRAM else []


def _add(rows: list[Row], series: dict[int, MetricSeries]) -> None:
    """Add the stored points to their series (locked by _series_of)."""
    changed = []
    for series_id, points in groupby(sorted(rows, key=itemgetter("series_id", "timestamp")), itemgetter("series_id")):
        points = list(points)
        found, values, latest = series[series_id], [point["value"] for point in points], points[-1]
        if found.metric_type == MetricType.COUNTER:
            found.value += sum(values)
        elif found.metric_type == MetricType.GAUGE:
            if found.last_at is None or latest["timestamp"] >= found.last_at:
                found.value = latest["value"]
        else:
            for value in values:
                found.buckets[bisect.bisect_left(BUCKETS, value)] += 1
        found.count += len(values)
        found.sum += sum(values)
        found.last_at = max(filter(None, [found.last_at, latest["timestamp"]]))
        changed.append(found)
    _save_all(MetricSeries, changed, ["id"], ["value", "count", "sum", "buckets", "last_at"])
    _add_to_minutes(rows)


def _save_all(model, objects: list, unique_fields: list[str], fields: list[str]) -> None:
    """Insert or update `objects` in one statement per 500: INSERT ... ON CONFLICT DO UPDATE, which
    costs a fraction of bulk_update's CASE expressions."""
    model.objects.bulk_create(objects, batch_size=500, update_conflicts=True, unique_fields=unique_fields, update_fields=fields)


def _add_to_minutes(rows: list[Row]) -> None:
    """Add the stored points to their series' minute rollups, in the database: one upsert per
    chunk adds counts and sums and keeps the extremes, without reading the rows first."""
    minutes: dict[tuple[int, datetime], list[float]] = defaultdict(list)
    for row in rows:
        minutes[(row["series_id"], row["timestamp"].replace(second=0, microsecond=0))].append(row["value"])
    quote = connections[router.db_for_write(MetricMinute)].ops.quote_name
    table = quote(MetricMinute._meta.db_table)
    count, total, low, high = (f"{quote(name)}" for name in ("count", "sum", "min", "max"))
    on_conflict = (
        f"ON CONFLICT ({quote('series_id')}, {quote('minute')}) DO UPDATE SET "
        f"{count} = {table}.{count} + excluded.{count}, {total} = {table}.{total} + excluded.{total}, "
        f"{low} = CASE WHEN excluded.{low} < {table}.{low} THEN excluded.{low} ELSE {table}.{low} END, "
        f"{high} = CASE WHEN excluded.{high} > {table}.{high} THEN excluded.{high} ELSE {table}.{high} END"
    )
    added = [
        {
            "series_id": series_id,
            "minute": minute,
            "count": len(values),
            "sum": sum(values),
            "min": min(values),
            "max": max(values),
        }
        for (series_id, minute), values in minutes.items()
    ]
    insert_rows(MetricMinute, added, on_conflict)


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


class RunMetrics:
    """/metrics: runs by status, and LLM calls, tokens and cost by model and tier (from the daily
    rollups, so over every day still kept)."""

    def collect(self):
        rollups.refresh()
        runs = CounterMetricFamily("telemetry_runs", "Runs recorded, by status", labels=["status"])
        for status, count in RunDay.objects.values_list("status").annotate(n=Sum("run_count")).order_by("status"):
            runs.add_metric([status], count)
        yield runs
        usage = UsageDay.objects.values("model", "tier").annotate(
            calls=Sum("call_count"),
            cost=Sum("cost_sum"),
            input=Sum("input_tokens_sum"),
            output=Sum("output_tokens_sum"),
            cache_read=Sum("cache_read_tokens_sum"),
            cache_write=Sum("cache_write_tokens_sum"),
        )
        calls = CounterMetricFamily("telemetry_llm_calls", "LLM calls, by model and tier", labels=["model", "tier"])
        cost = CounterMetricFamily(
            "telemetry_llm_cost_dollars", "LLM cost in dollars, by model and tier", labels=["model", "tier"]
        )
        tokens = CounterMetricFamily(
            "telemetry_llm_tokens", "LLM tokens, by model, tier and kind", labels=["model", "tier", "kind"]
        )
        for row in usage.order_by("model", "tier"):
            labels = [row["model"], row["tier"] or "none"]
            calls.add_metric(labels, row["calls"])
            cost.add_metric(labels, float(row["cost"]))
            for kind in ("input", "output", "cache_read", "cache_write"):
                tokens.add_metric([*labels, kind], row[kind])
        yield from (calls, cost, tokens)


# --- Queries (seed 004's query engine): over the minute rollups, percentiles over the points ---

MAX_PERCENTILE_POINTS = 200_000  # percentiles of a longer range come from its latest points


def percentile(ordered: list[float], fraction: float) -> float | None:
    """The value `fraction` of the way through `ordered` (sorted), interpolated between ranks."""
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def moving_average(points: list[dict[str, Any]], window: int) -> list[dict[str, Any]]:
    """Each point's value averaged with the window - 1 before it."""
    values = [point["value"] for point in points]
    return [
        {"time": point["time"], "value": sum(values[max(0, i - window + 1) : i + 1]) / min(window, i + 1)}
        for i, point in enumerate(points)
    ]


def anomalies(points: list[dict[str, Any]], k: float) -> list[dict[str, Any]]:
    """The points more than `k` standard deviations from the mean."""
    values = [point["value"] for point in points]
    if len(values) < 2:
        return []
    mean = sum(values) / len(values)
    deviation = statistics.pstdev(values)
    if deviation == 0:
        return []
    return [
        {**point, "deviations": round((point["value"] - mean) / deviation, 3)}
        for point in points
        if abs(point["value"] - mean) > k * deviation
    ]


class EpochBucket(Func):
    """The start of the `interval`-second bucket a time falls in, as seconds since the epoch."""

    output_field = BigIntegerField()

    def __init__(self, expression: str, interval: int):
        super().__init__(expression, interval=int(interval))

    def as_sqlite(self, compiler, connection, **extra):
        # '%%%%s' ends up as strftime's %s: one % pair for the template, one for the query params.
        template = "(CAST(strftime('%%%%s', %(expressions)s) AS INTEGER) / %(interval)d) * %(interval)d"
        return self.as_sql(compiler, connection, template=template, **extra)

    def as_postgresql(self, compiler, connection, **extra):
        # date_part in double precision: EXTRACT's numeric arithmetic took most of the query's time.
        template = "(FLOOR(date_part('epoch', %(expressions)s) / %(interval)d) * %(interval)d)::bigint"
        return self.as_sql(compiler, connection, template=template, **extra)


def _bucket_value(count: int, total: float, low: float, high: float, aggregation: str, interval: int) -> float:
    return {
        "sum": total,
        "count": count,
        "avg": total / count,
        "min": low,
        "max": high,
        "rate": total / interval,
    }[aggregation]


def _fetched(values) -> list:
    """The single column of a values_list queryset, fetched by the database cursor: the ORM's
    iteration costs about a microsecond a row, most of a query over thousands of points."""
    try:
        sql, params = values.query.sql_with_params()
    except EmptyResultSet:  # e.g. `__in` an empty list: nothing to ask
        return []
    with connections[values.db].cursor() as cursor:
        cursor.execute(sql, params)
        return [value for (value,) in cursor.fetchall()]


def query(q: MetricQuery) -> dict[str, Any]:
    """A metric over a time range (default: the last hour), of the series whose labels match,
    bucketed by `interval` and aggregated; with percentiles, a moving average and anomalies.
    The buckets are summed up by the database from the minute rollups."""
    end = q.end or timezone.now()
    start = q.start or end - timedelta(hours=1)
    series = MetricSeries.objects.filter(name=q.name, **{f"labels__{name}": value for name, value in q.labels.items()})
    series_ids = list(series.values_list("id", flat=True))
    first_minute = start.replace(second=0, microsecond=0)
    buckets = (
        MetricMinute.objects.filter(series_id__in=series_ids, minute__gte=first_minute, minute__lte=end)
        .annotate(bucket=EpochBucket("minute", q.interval))
        .values("bucket")
        .annotate(count=Sum("count"), total=Sum("sum"), low=Min("min"), high=Max("max"))
        .order_by("bucket")
        .values_list("bucket", "count", "total", "low", "high")
    )
    points = [
        {"time": datetime.fromtimestamp(bucket, UTC).isoformat(), "value": _bucket_value(*row, q.aggregation, q.interval)}
        for bucket, *row in buckets
    ]
    raw = MetricPoint.objects.filter(series_id__in=series_ids, timestamp__gte=start, timestamp__lte=end)
    values = sorted(_fetched(raw.order_by("-timestamp").values_list("value")[:MAX_PERCENTILE_POINTS]))
    summary = {
        "count": len(values),
        "sum": sum(values),
        "avg": sum(values) / len(values) if values else None,
        "min": values[0] if values else None,
        "max": values[-1] if values else None,
        **{f"p{int(p * 100)}": percentile(values, p) for p in (0.5, 0.95, 0.99)},
    }
    return {
        "name": q.name,
        "labels": q.labels,
        "series": len(series_ids),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "interval_seconds": q.interval,
        "aggregation": q.aggregation,
        "points": points,
        "summary": summary,
        "moving_average": moving_average(points, q.window),
        "anomalies": anomalies(points, q.k),
    }
