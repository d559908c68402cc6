"""How metric points are stored beside their series and minute rollups: a web process remembers
series ids between batches, so batches that race, series deleted or replaced between batches,
points sent twice and bad points among known series must all leave the totals and rollups equal
to what the stored points add up to."""

from __future__ import annotations

import bisect
import itertools
import random
from collections import defaultdict
from datetime import timedelta

import pytest
from django.utils import timezone

from metrics.models import MetricMinute, MetricPoint, MetricSeries
from metrics.services import BUCKETS, ingest_metrics
from tests.conftest import at_once
from tests.metrics.test_metrics import metric

pytestmark = pytest.mark.django_db


def assert_totals_and_rollups_add_up() -> None:
    """Every series' totals and minute rollups are what its stored points give."""
    points = defaultdict(list)
    for series_id, at, value in MetricPoint.objects.values_list("series_id", "timestamp", "value"):
        points[series_id].append((at, value))
    for series in MetricSeries.objects.all():
        mine = sorted(points[series.pk])
        values = [value for _, value in mine]
        assert (series.count, series.last_at) == (len(mine), mine[-1][0] if mine else None), series
        assert series.sum == pytest.approx(sum(values)), series
        expected = {"counter": pytest.approx(sum(values)), "gauge": mine[-1][1] if mine else 0}.get(series.metric_type)
        if expected is not None:
            assert series.value == expected, series
        else:
            buckets = [0] * len(BUCKETS)
            for value in values:
                buckets[bisect.bisect_left(BUCKETS, value)] += 1
            assert series.buckets == buckets, series
        minutes = defaultdict(list)
        for at, value in mine:
            minutes[at.replace(second=0, microsecond=0)].append(value)
        rollups = {row.minute: row for row in MetricMinute.objects.filter(series=series)}
        assert set(rollups) == set(minutes), series
        for minute, found in minutes.items():
            row = rollups[minute]
            assert (row.count, row.min, row.max) == (len(found), min(found), max(found)), (series, minute)
            assert row.sum == pytest.approx(sum(found)), (series, minute)


def test_concurrent_batches_leave_totals_and_rollups_equal_to_their_points(transactional_db):
    """Four threads, five batches each, over 15 shared series of the three kinds and three minutes;
    a quarter of each batch are points every thread sends (stored once)."""
    start = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=10)
    workers = itertools.count()

    def shaped(rng: random.Random, event_id: str) -> dict:
        kind = rng.choice(["counter", "gauge", "histogram"])
        item = metric(f"raced_{kind}", kind, round(rng.uniform(0, 20), 3), event_id, shard=str(rng.randrange(5)))
        return {**item, "timestamp": (start + timedelta(microseconds=rng.randrange(180_000_000))).isoformat()}

    def send() -> int:
        worker = next(workers)
        rng, shared = random.Random(worker), random.Random(99)
        for batch in range(5):
            items = [shaped(rng, f"w{worker}-{batch}-{i}") for i in range(150)]
            items += [shaped(shared, f"shared-{batch}-{i}") for i in range(50)]
            assert not ingest_metrics(rng.sample(items, len(items)), lambda agent: True).failed
        return worker

    assert sorted(at_once(send, 4)) == [0, 1, 2, 3]
    assert MetricPoint.objects.count() == 4 * 5 * 150 + 5 * 50
    assert MetricSeries.objects.count() == 15
    assert_totals_and_rollups_add_up()


def test_a_series_deleted_or_replaced_between_batches_takes_its_points_anew(agent):
    first = [metric("jobs_total", "counter", 1, "s1", queue="a"), metric("depth", "gauge", 5, "s2")]
    assert agent.post("/api/v1/metrics", first, format="json").json()["inserted"] == 2  # their ids remembered
    old = dict(MetricSeries.objects.values_list("name", "id"))
    MetricSeries.objects.all().delete()  # as a reset would: their points and rollups go too
    MetricSeries.objects.create(id=old["depth"], name="other", labels_key="{}", metric_type="counter")  # its id reused
    second = [metric("jobs_total", "counter", 2, "s3", queue="a"), metric("depth", "gauge", 7, "s4")]
    body = agent.post("/api/v1/metrics", second, format="json").json()
    assert (body["inserted"], body["failed"]) == (2, 0)
    found = {series.name: series for series in MetricSeries.objects.all()}
    assert (found["jobs_total"].value, found["depth"].value, found["other"].count) == (2, 7, 0)
    assert old["jobs_total"] not in {series.pk for series in found.values()} and found["depth"].pk != old["depth"]
    assert set(MetricPoint.objects.values_list("event_id", "series_id")) == {
        ("s3", found["jobs_total"].pk),
        ("s4", found["depth"].pk),
    }
    assert_totals_and_rollups_add_up()


def test_a_series_remade_as_another_kind_between_batches_refuses_the_points_of_the_old_kind(agent):
    assert agent.post("/api/v1/metrics", [metric("jobs", "gauge", 1, "k1", queue="a")], format="json").json()["inserted"] == 1
    MetricSeries.objects.all().delete()  # remembered as a gauge by the web process
    items = [metric("jobs", "counter", 3, "k2", queue="a"), metric("jobs", "gauge", 2, "k3", queue="a")]
    results = agent.post("/api/v1/metrics", items, format="json").json()["results"]
    assert [r.get("error", {}).get("code", r["status"]) for r in results] == ["created", "type_mismatch"]
    series = MetricSeries.objects.get()
    assert (series.metric_type, series.value, series.count) == ("counter", 3, 1)
    assert set(MetricPoint.objects.values_list("event_id", flat=True)) == {"k2"}
    assert_totals_and_rollups_add_up()


def test_a_point_sent_twice_counts_once(agent):
    retry = metric("retries_total", "counter", 2, "d1")
    wait = metric("wait_seconds", "histogram", 0.3, "d2")
    body = agent.post("/api/v1/metrics", [retry, wait, retry, wait], format="json").json()
    assert [r["status"] for r in body["results"]] == ["created", "created", "duplicate", "duplicate"]
    again = agent.post("/api/v1/metrics", [wait, retry], format="json").json()  # the series known now
    assert (again["inserted"], again["duplicates"]) == (0, 2)
    assert dict(MetricSeries.objects.values_list("name", "count")) == {"retries_total": 1, "wait_seconds": 1}
    assert MetricMinute.objects.filter(count=1).count() == 2 and MetricMinute.objects.count() == 2
    assert_totals_and_rollups_add_up()


def test_bad_points_among_known_series_are_refused_alone(agent):
    assert agent.post("/api/v1/metrics", [metric("jobs", "gauge", 1, "b1", queue="a")], format="json").json()["inserted"] == 1
    items = [
        metric("jobs", "gauge", 2, "b2", queue="a"),
        metric("jobs", "counter", 1, "b3", queue="a"),  # the series is a gauge
        metric("jobs", "gauge", "nan", "b4", queue="a"),
        metric("jobs", "counter", 1, "b5", queue="b"),  # a new series of a gauge metric
    ]
    results = agent.post("/api/v1/metrics", items, format="json").json()["results"]
    codes = [r.get("error", {}).get("code", r["status"]) for r in results]
    assert codes == ["created", "type_mismatch", "invalid", "type_mismatch"]
    series = MetricSeries.objects.get()
    assert (series.labels_key, series.value, series.count) == ('{"queue":"a"}', 2, 2)
    assert set(MetricPoint.objects.values_list("event_id", flat=True)) == {"b1", "b2"}
    assert_totals_and_rollups_add_up()
