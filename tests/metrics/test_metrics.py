"""Metric points agents send, and /metrics: parsed by prometheus-client's own parser, with the
values known input must give, from any web process; who may scrape it."""

from __future__ import annotations

import random
import threading
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from approvals.models import ApprovalRequest
from core import events
from metrics.models import MetricMinute, MetricSeries
from quality.models import LlmUsage
from tests.conftest import key_client, make_key
from tests.runs.factories import make_run
from tests.services import PROMETHEUS_ACCEPT, asgi_server

pytestmark = pytest.mark.django_db


def metric(name: str, metric_type: str, value, event_id: str, **labels) -> dict:
    return {
        "event_id": event_id,
        "agent_name": "alpha",
        "name": name,
        "metric_type": metric_type,
        "value": value,
        "labels": labels,
    }


KNOWN = [
    metric("agent_execution_total", "counter", 1, "m1", agent_type="coder", phase="plan", status="ok"),
    metric("agent_execution_total", "counter", 2, "m2", agent_type="coder", phase="plan", status="ok"),
    metric("agent_execution_total", "counter", 1, "m3", agent_type="tester", phase="run", status="error"),
    metric("context_window_used_tokens", "gauge", 900, "m4", agent_id="a1"),
    metric("agent_execution_duration_seconds", "histogram", 0.2, "m5", agent_type="coder", phase="plan"),
    metric("agent_execution_duration_seconds", "histogram", 3, "m6", agent_type="coder", phase="plan"),
    metric("agent_execution_duration_seconds", "histogram", 30, "m7", agent_type="coder", phase="plan"),
]


def scrape(text: str) -> dict:
    """{(sample name, frozenset of labels): value}."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_points_add_up_into_series(agent):
    later = metric("context_window_used_tokens", "gauge", 1200, "m8", agent_id="a1")
    earlier = {**metric("context_window_used_tokens", "gauge", 5, "m9", agent_id="a1"), "timestamp": "2000-01-01T00:00:00Z"}
    body = agent.post("/api/v1/metrics", [*KNOWN, later, earlier], format="json").json()
    assert (body["inserted"], body["failed"]) == (9, 0)
    again = agent.post("/api/v1/ingest", [{"kind": "metric", **KNOWN[0]}], format="json").json()
    assert again["duplicates"] == 1  # and the counter is not counted twice:
    new = metric("agent_execution_total", "counter", 4, "m10", agent_type="coder", phase="plan", status="ok")
    mixed = agent.post("/api/v1/metrics", [KNOWN[1], new], format="json").json()
    assert (mixed["inserted"], mixed["duplicates"]) == (1, 1)  # only the new one is added, to the total and its minute:
    coder = MetricSeries.objects.get(name="agent_execution_total", labels_key__contains='"coder"')
    assert MetricMinute.objects.get(series=coder).sum == 7
    totals = {s.labels_key: s.value for s in MetricSeries.objects.filter(name="agent_execution_total")}
    assert totals == {
        '{"agent_type":"coder","phase":"plan","status":"ok"}': 7,
        '{"agent_type":"tester","phase":"run","status":"error"}': 1,
    }
    gauge = MetricSeries.objects.get(name="context_window_used_tokens")
    assert (gauge.value, gauge.count) == (1200, 3)  # a late point older than the latest does not set it
    histogram = MetricSeries.objects.get(name="agent_execution_duration_seconds")
    assert (histogram.count, histogram.sum, sum(histogram.buckets), histogram.buckets[-1]) == (3, 33.2, 3, 1)


@pytest.mark.parametrize(
    ("item", "code"),
    [
        (metric("x_total", "counter", -1, "b1"), "invalid"),
        (metric("x", "gauge", "nan", "b2"), "invalid"),
        (metric("9bad", "gauge", 1, "b3"), "invalid"),
        (metric("x", "histogram", 1, "b4", le="1"), "invalid"),
        (metric("x", "gauge", 1, "b5", **{f"l{i}": "v" for i in range(11)}), "invalid"),
        (metric("x", "summary", 1, "b6"), "invalid"),
        ({**metric("x", "gauge", 1, "b7"), "agent_name": "beta"}, "agent_forbidden"),
    ],
)
def test_bad_points_are_refused_alone(agent, item, code):
    good = metric("fine", "gauge", 1, "g1")
    body = agent.post("/api/v1/metrics", [good, item], format="json").json()
    assert body["inserted"] == 1 and body["results"][1]["error"]["code"] == code
    assert list(MetricSeries.objects.values_list("name", flat=True)) == ["fine"]


def test_a_metric_keeps_its_kind_and_a_bounded_number_of_series(agent, settings):
    settings.METRICS_MAX_SERIES = 2
    agent.post("/api/v1/metrics", [metric("jobs", "gauge", 1, "k1", queue="a")], format="json")
    mismatch = agent.post("/api/v1/metrics", [metric("jobs", "counter", 1, "k2", queue="b")], format="json").json()
    assert mismatch["results"][0]["error"]["code"] == "type_mismatch"
    items = [metric("jobs", "gauge", 1, f"k{i}", queue=q) for i, q in [(3, "b"), (4, "c"), (5, "a")]]
    results = agent.post("/api/v1/metrics", items, format="json").json()["results"]
    assert [r["status"] for r in results] == ["created", "rejected", "created"]
    assert results[1]["error"]["code"] == "too_many_series"


@pytest.fixture
def known_state(agent):
    agent.post("/api/v1/metrics", KNOWN, format="json")
    make_run("alpha", status="success")
    make_run("alpha", status="failed")
    LlmUsage.objects.create(event_id="u1", agent_name="alpha", model="m", tier="cheap", cost="0.25", input_tokens=100)
    ApprovalRequest.objects.create(
        agent_id="alpha",
        approval_type="deploy",
        timeout_seconds=3600,
        created_at=timezone.now() - timedelta(seconds=90),
        expires_at=timezone.now() + timedelta(hours=1),
    )
    agent.post("/api/v1/agents/alpha/heartbeat", {}, format="json")
    events.publish_now([events.Event("signal.sent", {}), events.Event("signal.sent", {})])


def test_any_label_value_and_name_comes_back_as_sent(agent, admin_client):
    tricky = 'say "hi" \\ to C:\\temp\nand ünïcode'
    items = [
        metric("jobs_done", "counter", 2, "t1", queue=tricky),  # a counter not named *_total
        metric("load", "gauge", 0.5, "t2"),  # no labels
        metric("wait_seconds", "histogram", 0.3, "t3"),  # a histogram without labels
    ]
    assert agent.post("/api/v1/metrics", items, format="json").json()["inserted"] == 3
    found = scrape(admin_client.get("/metrics", HTTP_ACCEPT=PROMETHEUS_ACCEPT).content.decode())
    assert found[("jobs_done_total", frozenset({"queue": tricky}.items()))] == 2
    assert found[("load", frozenset())] == 0.5
    assert found[("wait_seconds_count", frozenset())] == 1 and found[("wait_seconds_sum", frozenset())] == 0.3
    assert found[("wait_seconds_bucket", frozenset({"le": "0.5"}.items()))] == 1
    assert found[("wait_seconds_bucket", frozenset({"le": "0.25"}.items()))] == 0


def test_metrics_shows_known_values(known_state, admin_client):
    response = admin_client.get("/metrics", HTTP_ACCEPT=PROMETHEUS_ACCEPT)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    found = scrape(response.content.decode())
    coder = frozenset({"agent_type": "coder", "phase": "plan"}.items())
    assert found[("agent_execution_total", frozenset({**dict(coder), "status": "ok"}.items()))] == 3
    assert found[("context_window_used_tokens", frozenset({"agent_id": "a1"}.items()))] == 900
    buckets = {dict(labels)["le"]: value for (name, labels), value in found.items() if name.endswith("_bucket")}
    assert (buckets["0.25"], buckets["5.0"], buckets["10.0"], buckets["+Inf"]) == (1, 2, 2, 3)
    assert found[("agent_execution_duration_seconds_sum", coder)] == 33.2
    assert found[("telemetry_runs_total", frozenset({"status": "failed"}.items()))] == 1
    assert found[("telemetry_llm_cost_dollars_total", frozenset({"model": "m", "tier": "cheap"}.items()))] == 0.25
    assert found[("telemetry_events_total", frozenset({"event_type": "signal.sent"}.items()))] == 2
    assert found[("telemetry_approvals_pending", frozenset())] == 1
    assert 89 < found[("telemetry_approvals_oldest_pending_age_seconds", frozenset())] < 120
    assert found[("telemetry_agents_active", frozenset())] == 1


def test_a_client_that_does_not_ask_for_prometheus_formats_gets_local_telemetrys_counters(admin_client):
    make_run("alpha")
    make_run("alpha")
    make_run("beta", created_at=timezone.now() - timedelta(days=2))
    for accept in ({}, {"HTTP_ACCEPT": "*/*"}, {"HTTP_ACCEPT": "application/json"}):
        response = admin_client.get("/metrics", **accept)
        assert response["Content-Type"] == "application/json" and "Accept" in response["Vary"]
        assert response.json() == {"total_runs": 3, "agents": {"alpha": 2, "beta": 1}, "recent_24h": 2}
    for accept in (PROMETHEUS_ACCEPT, "text/plain", "application/openmetrics-text; version=1.0.0"):
        response = admin_client.get("/metrics", HTTP_ACCEPT=accept)
        assert response["Content-Type"].startswith("text/plain") and "Accept" in response["Vary"]


def test_who_may_scrape(anonymous, agent, settings):
    assert anonymous.get("/metrics").status_code == 401
    refused = agent.get("/metrics")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "missing_scope"
    prometheus = key_client(make_key("prometheus", scopes=["metrics:read"])[1], scheme="Bearer")
    assert prometheus.get("/metrics").status_code == 200
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8", "127.0.0.1"]
    assert anonymous.get("/metrics").status_code == 200
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    assert anonymous.get("/metrics").status_code == 401


def test_every_web_process_serves_the_same_figures(server_env):
    raw_key = make_key("alpha")[1]
    scraper = make_key("prometheus", scopes=["metrics:read"])[1]
    with asgi_server(server_env) as first, asgi_server(server_env) as second:
        sent = httpx.post(f"{first}/api/v1/metrics", json=KNOWN, headers={"Authorization": f"Api-Key {raw_key}"})
        assert sent.status_code == 200
        scraped = [
            scrape(httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {scraper}", "Accept": PROMETHEUS_ACCEPT}).text)
            for base in (first, second)
        ]
    # The server's own figures (telemetry_server_*) move as it serves, these very scrapes included.
    stored = [{sample: value for sample, value in s.items() if not sample[0].startswith("telemetry_server_")} for s in scraped]
    assert stored[0] == stored[1] and len(stored[0]) > 10
    assert (
        scraped[1][("agent_execution_total", frozenset({"agent_type": "tester", "phase": "run", "status": "error"}.items()))] == 1
    )


@pytest.fixture
def latency(agent):
    """Ten minutes of a gauge: two points a minute (1 and 3), but 20 and 22 in minute 7; and a
    second series, of another agent type. Returns the first minute."""
    base = (timezone.now() - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    items = []
    for minute in range(10):
        for index, value in enumerate((20, 22) if minute == 7 else (1, 3)):
            at = (base + timedelta(minutes=minute, seconds=10 + index)).isoformat()
            items.append({**metric("latency_seconds", "gauge", value, f"l{minute}-{index}", agent_type="coder"), "timestamp": at})
    items.append({**metric("latency_seconds", "gauge", 100, "t1", agent_type="tester"), "timestamp": base.isoformat()})
    assert agent.post("/api/v1/metrics", items, format="json").json()["inserted"] == 21
    return base


def test_queries_bucket_aggregate_and_find_anomalies(agent, latency):
    def ask(**params) -> dict:
        window = {"start": latency.isoformat(), "end": (latency + timedelta(minutes=10)).isoformat()}
        response = agent.get("/api/v1/metrics/query", {"name": "latency_seconds", **window, **params})
        assert response.status_code == 200, response.content
        return response.json()

    per_minute = ask(labels="agent_type:coder", interval="1m", aggregation="avg", k=2.5, window=2)
    assert per_minute["series"] == 1 and [p["value"] for p in per_minute["points"]] == [2] * 7 + [21] + [2] * 2
    assert per_minute["points"][7]["time"] == (latency + timedelta(minutes=7)).isoformat()
    assert [(a["value"], a["deviations"]) for a in per_minute["anomalies"]] == [(21, 3.0)]
    assert [p["value"] for p in per_minute["moving_average"]][6:9] == [2, 11.5, 11.5]
    assert per_minute["summary"] == {"count": 20, "sum": 78, "avg": 3.9, "min": 1, "max": 22, "p50": 3, "p95": 20.1,
                                     "p99": pytest.approx(21.62)}  # fmt: skip
    for aggregation, expected in [("sum", [20, 58]), ("count", [10, 10]), ("max", [3, 22]), ("min", [1, 1]),
                                  ("rate", [20 / 300, 58 / 300])]:  # fmt: skip
        found = ask(labels="agent_type:coder", interval="5m", aggregation=aggregation)
        assert [p["value"] for p in found["points"]] == pytest.approx(expected), aggregation
    both = ask(interval="1h", aggregation="max")
    assert both["series"] == 2 and [p["value"] for p in both["points"]] == [100]
    assert ask(labels="agent_type:nobody")["points"] == []
    bad = agent.get("/api/v1/metrics/query", {"name": "latency_seconds", "interval": "30s", "aggregation": "median"})
    assert bad.status_code == 400 and set(bad.json()["error"]["fields"]) == {"interval", "aggregation"}


def test_retention_deletes_exactly_what_is_old(agent, latency, settings):
    from django.db.models import F

    from metrics.models import MetricMinute, MetricPoint
    from operations.tasks import purge_old_records
    from traces.models import Span

    now = timezone.now()
    for index, age in enumerate((1, 10)):
        start = now - timedelta(days=age)
        Span.objects.create(event_id=f"{index:032x}{index + 1:016x}", trace_id=f"{index:032x}", span_id=f"{index + 1:016x}",
                            name="s", start_time=start, end_time=start, agent_name="alpha")  # fmt: skip
    MetricMinute.objects.filter(minute__lt=latency + timedelta(minutes=5)).update(minute=F("minute") - timedelta(days=100))
    before = MetricSeries.objects.get(labels_key='{"agent_type":"coder"}').count
    settings.METRICS_RETENTION_DAYS, settings.TRACES_RETENTION_DAYS, settings.AGGREGATES_RETENTION_DAYS = 1 / 24, 7, 90
    assert purge_old_records() == {
        "metric points": 21,
        "spans": 1,
        "metric minutes": 6,  # the first five minutes of one series, the one of the other
    }
    assert MetricPoint.objects.count() == 0 and Span.objects.count() == 1 and MetricMinute.objects.count() == 5
    assert MetricSeries.objects.get(labels_key='{"agent_type":"coder"}').count == before


def test_concurrent_batches_sharing_series_neither_deadlock_nor_lose_counts(transactional_db):
    from django.db import connection, connections

    from metrics.services import ingest_metrics

    if connection.vendor != "postgresql":
        pytest.skip("SQLite lets one writer at a time")
    failures = []

    def send(worker: int):
        rng = random.Random(worker)
        try:
            for batch in range(10):
                items = [metric("shared_total", "counter", 1, f"w{worker}-{batch}-{i}", shard=str(rng.randrange(40)))
                         for i in range(200)]  # fmt: skip
                assert not ingest_metrics(items, lambda agent: True).failed
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sum(MetricSeries.objects.filter(name="shared_total").values_list("value", flat=True)) == 4 * 10 * 200
