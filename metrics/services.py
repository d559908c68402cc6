"""Metric points agents send. Each point is stored (queries read points and minute rollups) and
added to its series in the same transaction: a counter's total, a gauge's latest value, a
histogram's bucket counts. /metrics reads the series, so every web process serves the same figures.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from datetime import datetime, timedelta
from itertools import groupby
from operator import attrgetter, itemgetter

from django.conf import settings
from django.db import connections, router, transaction
from django.db.models import Count
from django.utils import timezone
from prometheus_client import Histogram

from core import quotas
from core.batch import Batch, MayActAs, Row, purge
from core.fastpaths.bulk_insert import insert_rows
from metrics.models import MetricMinute, MetricPoint, MetricSeries, MetricType
from metrics.schemas import MetricIn

BUCKETS = Histogram.DEFAULT_BUCKETS  # upper bounds in seconds, the last +Inf


def ingest_metrics(items: list, may_act_as: MayActAs) -> Batch:
    batch = Batch(items, MetricIn)
    batch.reject_forbidden_agents(may_act_as)
    with transaction.atomic():
        series = _series_of(batch, getattr(may_act_as, "key", None))

        def row(item: MetricIn) -> Row:
            found = series[item.series_key]
            return {"event_id": item.event_id, "series_id": found.pk, "timestamp": item.timestamp,
                    "agent_name": item.agent_name, "value": item.value}  # fmt: skip

        by_id = {found.pk: found for found in series.values()}
        batch.store(MetricPoint, row, on_stored=lambda rows: _add(rows, by_id))
    return batch


def _series_of(batch: Batch, key=None) -> dict[tuple[str, str], MetricSeries]:
    """The series of the batch's valid items, created if new and locked till the transaction
    ends. Items are rejected whose metric_type differs from their metric's, that would give a metric
    more than METRICS_MAX_SERIES series (label sets), or an agent key more than METRIC_NAMES_PER_KEY
    new metric names or METRIC_SERIES_PER_KEY new series."""
    wanted = {item.series_key: item for item in batch.valid.values()}
    names = {name for name, _ in wanted}
    existing = MetricSeries.objects.filter(name__in=names)
    kinds = dict(existing.values_list("name", "metric_type").distinct())
    sizes = dict(existing.values("name").annotate(n=Count("id")).values_list("name", "n"))
    known = set(existing.filter(labels_key__in={key for _, key in wanted}).values_list("name", "labels_key"))
    _reject_past_key_bounds(batch, key, known, set(kinds))
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


def _reject_past_key_bounds(batch: Batch, key, known: set[tuple[str, str]], known_names: set[str]) -> None:
    """Reject the items that would make `key` create more metric names or series than it may."""
    items = list(batch.valid.items())
    new_names = sorted({item.name for _, item in items if item.name not in known_names})
    names = quotas.admit("metric_names_per_key", key, new_names, settings.METRIC_NAMES_PER_KEY)
    allowed_names = names | known_names
    new_series = sorted({_series_id(item) for _, item in items if item.series_key not in known and item.name in allowed_names})
    series = quotas.admit("metric_series_per_key", key, new_series, settings.METRIC_SERIES_PER_KEY)
    for index, item in items:
        if item.name not in allowed_names:
            batch.reject(index, "metric_names_per_key", str(quotas.QuotaExceeded("metric_names_per_key").detail))
        elif item.series_key not in known and _series_id(item) not in series:
            batch.reject(index, "metric_series_per_key", str(quotas.QuotaExceeded("metric_series_per_key").detail))


def _series_id(item: MetricIn) -> str:
    return "\x1f".join(item.series_key)


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


def purge_old_metrics(metric_days: float, aggregate_days: float) -> dict[str, int]:
    """Metric points and minute rollups older than their ages; how many of each. Series totals
    (what /metrics shows) stay."""
    now = timezone.now()
    return {
        "metric points": purge(MetricPoint.objects.filter(timestamp__lt=now - timedelta(days=metric_days))),
        "metric minutes": purge(MetricMinute.objects.filter(minute__lt=now - timedelta(days=aggregate_days))),
    }
