"""Metric queries: a metric over time from the minute rollups (label filters, interval buckets,
aggregation), percentiles over the points, a moving average and anomalies."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import BigIntegerField, Func, Max, Min, Sum
from django.utils import timezone

from metrics.models import MetricMinute, MetricPoint, MetricSeries
from metrics.schemas import MetricQuery

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
