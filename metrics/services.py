"""Metric points agents send. Each point is stored (queries read points and minute rollups) and
added to its series in the same transaction: a counter's total, a gauge's latest value, a
histogram's bucket counts. /metrics reads the series, so every web process serves the same figures.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from contextlib import nullcontext, suppress
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
from core.fastpaths.bulk_insert import db_values, insert_rows, update_rows
from metrics.models import MetricMinute, MetricPoint, MetricSeries, MetricType
from metrics.schemas import MetricIn

BUCKETS = Histogram.DEFAULT_BUCKETS  # upper bounds in seconds, the last +Inf
Pair = tuple[str, str]  # a series' name and labels_key (MetricIn.series_key)
Items = list[tuple[int, MetricIn]]  # items of a batch, by index
Known = tuple[int, str]  # a series' id and metric_type


# Each web process remembers the ids and kinds of the series it has seen, by name and labels: a batch
# of known series then skips the queries that find or create them. Every batch still locks its
# series rows by id once its points are in and checks each is the series remembered; one deleted
# (or its id reused) since is forgotten and the batch starts over. Cleared when full: a bound on
# memory (a few hundred bytes a series, labels up to 2,000 characters), not an eviction policy;
# bench.metrics' fleet has 10,250 series.
_SERIES_IDS: dict[Pair, Known] = {}
SERIES_IDS_MAX = 20_000
ATTEMPTS = 3  # a batch starts over when its series change under it; a third time in a row is an error
# What a batch reads of its series (not the labels) and writes back.
TOTALS = ("id", "name", "labels_key", "metric_type", "value", "count", "sum", "buckets", "last_at")


class StaleSeries(Exception):
    """A series the batch found (remembered, or read before the lock) was deleted or replaced."""


def ingest_metrics(items: list, may_act_as: MayActAs) -> Batch:
    batch = Batch(items, MetricIn)
    batch.reject_forbidden_agents(may_act_as)
    key = getattr(may_act_as, "key", None)
    for _ in range(ATTEMPTS - 1):
        with suppress(StaleSeries):
            _store(batch, key)
            return batch
    _store(batch, key)
    return batch


def _store(batch: Batch, key) -> None:
    """The points first, then their series locked, checked and added to: on PostgreSQL the locks
    that batches sharing series wait on are held for the totals and rollups only, not the insert.
    What the points add is worked out before the transaction (on SQLite it holds the write lock
    from BEGIN), on the lock only when some were duplicates."""
    series, misses = _remembered(batch)  # before the transaction
    # Series found or created join the points' transaction; with none (a busy fleet's usual batch),
    # the points' own (Batch.store) is the only one: no savepoint, one round trip less each way.
    with transaction.atomic() if misses else nullcontext():
        if misses:
            series.update(_found_or_created(batch, key, misses))
        # A series found gone, or of another kind than remembered: the process's memory is stale.
        if any(series.get(item.series_key, (0, ""))[1] != item.metric_type for item in batch.valid.values()):
            _forget(series)
            raise StaleSeries

        def row(item: MetricIn) -> Row:
            return {"event_id": item.event_id, "series_id": series[item.series_key][0], "timestamp": item.timestamp,
                    "agent_name": item.agent_name, "value": item.value}  # fmt: skip

        additions = Additions({pk: kind for pk, kind in series.values()})
        batch.store(MetricPoint, row, prepare=additions.work_out, on_stored=lambda rows: additions.apply(rows, _locked(series)))
    if len(_SERIES_IDS) + len(series) > SERIES_IDS_MAX:
        _SERIES_IDS.clear()
    _SERIES_IDS.update(series)


def _remembered(batch: Batch) -> tuple[dict[Pair, Known], Items]:
    """The series of the batch's items this process remembers, and the other items: those of
    series not remembered, or remembered of another kind (found anew, and rejected as they should)."""
    series, misses = {}, []
    for index, item in batch.valid.items():
        found = _SERIES_IDS.get(item.series_key)
        if found is None or found[1] != item.metric_type:
            misses.append((index, item))
        else:
            series[item.series_key] = found
    return series, misses


def _forget(series: dict[Pair, Known]) -> None:
    for pair in series:
        _SERIES_IDS.pop(pair, None)


def _locked(series: dict[Pair, Known]) -> dict[int, Row]:
    """The batch's series rows by id, locked till the transaction ends. StaleSeries when one is
    gone or not the one its id was."""
    # Always in one order (by id): batches that share series then wait for each other instead of
    # deadlocking. No key: the foreign keys of other batches' points (KEY SHARE) do not wait on it.
    query = MetricSeries.objects.select_for_update(no_key=True).filter(pk__in={pk for pk, _ in series.values()})
    locked = {found["id"]: found for found in query.order_by("id").values(*TOTALS)}
    for (name, labels_key), (pk, kind) in series.items():
        found = locked.get(pk)
        if found is None or (found["name"], found["labels_key"], found["metric_type"]) != (name, labels_key, kind):
            _forget(series)
            raise StaleSeries
    return locked


def _found_or_created(batch: Batch, key, misses: Items) -> dict[Pair, Known]:
    """The series of `misses` (items of the batch), created if new. Items are rejected whose
    metric_type differs from their metric's, that would give a metric more than
    METRICS_MAX_SERIES series (label sets), or an agent key more than METRIC_NAMES_PER_KEY new
    metric names or METRIC_SERIES_PER_KEY new series."""
    wanted = {item.series_key for _, item in misses}
    names = {name for name, _ in wanted}
    existing = MetricSeries.objects.filter(name__in=names)
    kinds = dict(existing.values_list("name", "metric_type").distinct())
    sizes = dict(existing.values("name").annotate(n=Count("id")).values_list("name", "n"))
    known = set(existing.filter(labels_key__in={key for _, key in wanted}).values_list("name", "labels_key"))
    _reject_past_key_bounds(batch, key, misses, known, set(kinds))
    new = []
    for index, item in misses:
        if index not in batch.valid:
            continue
        pair = item.series_key
        kind = kinds.setdefault(item.name, item.metric_type)
        if kind != item.metric_type:
            _reject_mismatch(batch, index, item, kind)
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
    # Always in one order (by name and labels): batches that create the same series wait for each other.
    MetricSeries.objects.bulk_create(sorted(new, key=attrgetter("name", "labels_key")), ignore_conflicts=True)
    kept = {item.series_key for index, item in misses if index in batch.valid}
    found = MetricSeries.objects.filter(name__in=names, labels_key__in={key for _, key in kept})
    rows = found.values_list("name", "labels_key", "id", "metric_type")
    return {(name, labels_key): (pk, kind) for name, labels_key, pk, kind in rows if (name, labels_key) in kept}


def _reject_mismatch(batch: Batch, index: int, item: MetricIn, kind: str) -> None:
    batch.reject(index, "type_mismatch", f"Metric '{item.name}' is a {kind}, not a {item.metric_type}.")


def _reject_past_key_bounds(batch: Batch, key, items: Items, known: set[Pair], known_names: set[str]) -> None:
    """Reject the `items` that would make `key` create more metric names or series than it may."""
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


class Additions:
    """What stored points add to their series (`kinds`: their metric types by id) and to their
    minute rollups, worked out from the rows without the database."""

    def __init__(self, kinds: dict[int, str]):
        self.kinds = kinds
        self.rows = 0  # how many rows it was worked out from
        self.series: dict[int, Row] = {}
        self.minutes: list[Row] = []
        self.minute_values: list[list] = []

    def work_out(self, rows: list[Row]) -> None:
        self.rows, self.series = len(rows), {}
        minutes: dict[tuple[int, datetime], list[float]] = defaultdict(list)
        for series_id, points in groupby(sorted(rows, key=itemgetter("series_id", "timestamp")), itemgetter("series_id")):
            points = list(points)
            values, latest = [point["value"] for point in points], points[-1]
            buckets = _empty(self.kinds[series_id])
            for value in values if buckets else ():
                buckets[bisect.bisect_left(BUCKETS, value)] += 1
            self.series[series_id] = {"count": len(values), "sum": sum(values), "buckets": buckets,
                                      "last_at": latest["timestamp"], "last_value": latest["value"]}  # fmt: skip
            for point in points:
                minutes[(series_id, point["timestamp"].replace(second=0, microsecond=0))].append(point["value"])
        self.minutes = [
            {"series_id": pk, "minute": minute, "count": len(values), "sum": sum(values), "min": min(values), "max": max(values)}
            for (pk, minute), values in minutes.items()
        ]
        self.minute_values = db_values(MetricMinute, self.minutes)

    def apply(self, rows: list[Row], series: dict[int, Row]) -> None:
        """Add the stored `rows` (those it was worked out from, but for duplicates) to the `series`
        rows (locked by _locked) and to the minute rollups."""
        if len(rows) != self.rows:  # some were duplicates (rows are a subset of those worked out)
            self.work_out(rows)
        for series_id, added in self.series.items():
            found = series[series_id]
            if found["metric_type"] == MetricType.COUNTER:
                found["value"] += added["sum"]
            elif found["metric_type"] == MetricType.GAUGE:
                if found["last_at"] is None or added["last_at"] >= found["last_at"]:
                    found["value"] = added["last_value"]
            else:
                found["buckets"] = [total + more for total, more in zip(found["buckets"], added["buckets"], strict=True)]
            found["count"] += added["count"]
            found["sum"] += added["sum"]
            found["last_at"] = max(filter(None, [found["last_at"], added["last_at"]]))
        update_rows(MetricSeries, [series[series_id] for series_id in sorted(self.series)], TOTALS[4:])
        # One upsert per chunk adds counts and sums and keeps the extremes, without reading the rows first.
        insert_rows(MetricMinute, self.minutes, _minutes_on_conflict(), values=self.minute_values)


def _minutes_on_conflict() -> str:
    quote = connections[router.db_for_write(MetricMinute)].ops.quote_name
    table = quote(MetricMinute._meta.db_table)
    count, total, low, high = (f"{quote(name)}" for name in ("count", "sum", "min", "max"))
    return (
        f"ON CONFLICT ({quote('series_id')}, {quote('minute')}) DO UPDATE SET "
        f"{count} = {table}.{count} + excluded.{count}, {total} = {table}.{total} + excluded.{total}, "
        f"{low} = CASE WHEN excluded.{low} < {table}.{low} THEN excluded.{low} ELSE {table}.{low} END, "
        f"{high} = CASE WHEN excluded.{high} > {table}.{high} THEN excluded.{high} ELSE {table}.{high} END"
    )


def purge_old_metrics(metric_days: float, aggregate_days: float) -> dict[str, int]:
    """Metric points and minute rollups older than their ages; how many of each. Series totals
    (what /metrics shows) stay."""
    now = timezone.now()
    return {
        "metric points": purge(MetricPoint.objects.filter(timestamp__lt=now - timedelta(days=metric_days))),
        "metric minutes": purge(MetricMinute.objects.filter(minute__lt=now - timedelta(days=aggregate_days))),
    }
