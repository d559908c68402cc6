"""Metrics and traces, beside the raw limits of the same run:

1. Ingest of metric points (POST /api/v1/metrics, batches of 1000 points over 200 series) and of
   spans (POST /api/v1/ingest, batches of 500 spans of kind "span"), as points/s and spans/s, and
   the same rows inserted raw (core.fastpaths.bulk_insert.insert_new: one INSERT per 1000 rows of
   random event ids over 200 series, as the API gets them; no HTTP, no series or rollups; the mean
   of a run before the loads and one after). Target:
   0.1 ms per metric, 0.2 ms per span.
2. GET /metrics with 10,000 agents (registry rows and beats) and 1,000,000 points over ~10,000
   series in the database: the scrape time (target < 200 ms).
3. A query of one series over a range of about 1,000 points, per 1,000 points (target: 10 ms
   for 1,000 metrics): the query engine in this process (metrics.query.query, as a library call
   would run it) and the same over HTTP (GET /api/v1/metrics/query).
4. What collection costs the agent: one SDK MetricsRecorder call and one Tracer span (start and
   end), each accepted into the durable local spool (target: 0.1 ms per metric, 0.2 ms per span).
"""

from __future__ import annotations

import json
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from bench.harness import Load, environment, servers

WORKERS = 2
SECONDS = 8.0
POINTS = 1_000_000
AGENTS = 10_000
CHUNK = 1000
RAW_ROWS = 20_000
SERIES = 200  # the series a batch of points falls on


def point(rng: random.Random, at: datetime) -> dict:
    """A point of one of ~10,250 series: context-window use per agent (10,000), executions by
    type/phase/status (150), their durations (50), tool calls (40)."""
    roll = rng.random()
    if roll < 0.4:
        return {"name": "context_window_used_tokens", "metric_type": "gauge", "value": rng.randint(0, 200_000),
                "labels": {"agent_id": f"agent-{rng.randrange(AGENTS)}"}}  # fmt: skip
    agent_type, phase = f"type-{rng.randrange(10)}", f"phase-{rng.randrange(5)}"
    if roll < 0.7:
        status = rng.choice(["ok", "error", "timeout"])
        return {"name": "agent_execution_total", "metric_type": "counter", "value": 1,
                "labels": {"agent_type": agent_type, "phase": phase, "status": status}}  # fmt: skip
    if roll < 0.9:
        return {"name": "agent_execution_duration_seconds", "metric_type": "histogram", "value": rng.expovariate(1 / 3),
                "labels": {"agent_type": agent_type, "phase": phase}}  # fmt: skip
    return {"name": "tool_calls_total", "metric_type": "counter", "value": 1,
            "labels": {"tool": f"tool-{rng.randrange(20)}", "status": rng.choice(["ok", "error"])}}  # fmt: skip


def stamped(item: dict, rng: random.Random, at: datetime, agent: str = "agent-0") -> dict:
    return {**item, "event_id": uuid.UUID(int=rng.getrandbits(128)).hex, "agent_name": agent, "timestamp": at.isoformat()}


def span(rng: random.Random, trace: str, index: int) -> dict:
    start = datetime.now(UTC) - timedelta(seconds=rng.uniform(0, 3600))
    return {
        "kind": "span",
        "trace_id": trace,
        "span_id": f"{rng.getrandbits(64) or 1:016x}",
        "parent_span_id": "" if index == 0 else f"{rng.getrandbits(64) or 1:016x}",
        "name": f"step-{index % 10}",
        "start_time": start.isoformat(),
        "end_time": (start + timedelta(milliseconds=rng.randint(1, 5000))).isoformat(),
        "agent_name": "agent-0",
        "attributes": {"files": index % 7, "tool": f"tool-{index % 20}"},
        "events": [{"name": "started", "timestamp": start.isoformat()}],
    }


def raw_rows_per_second() -> dict:
    """insert_new of the same rows, without HTTP, validation, series or rollups."""
    from core.fastpaths.bulk_insert import insert_new
    from metrics.models import MetricPoint, MetricSeries
    from traces.models import Span

    # As the API's points: random event ids (stamped) over SERIES series, each batch on all of them.
    series = [
        MetricSeries.objects.create(name="raw_bench", labels_key=f'{{"n":"{n}"}}', metric_type="gauge") for n in range(SERIES)
    ]
    rng = random.Random(3)
    now = datetime.now(UTC)
    points = [{"event_id": uuid.UUID(int=rng.getrandbits(128)).hex, "series_id": rng.choice(series).pk, "timestamp": now,
               "agent_name": "agent-0", "value": rng.random()} for _ in range(RAW_ROWS)]  # fmt: skip
    started = time.perf_counter()
    for offset in range(0, RAW_ROWS, CHUNK):
        insert_new(MetricPoint, points[offset : offset + CHUNK])
    points_s = RAW_ROWS / (time.perf_counter() - started)
    spans = []
    for i in range(RAW_ROWS):
        fields = span(rng, f"{rng.getrandbits(128) or 1:032x}", i)
        del fields["kind"]
        spans.append({**fields, "event_id": fields["trace_id"] + fields["span_id"], "span_kind": "internal", "start_time": now,
                      "end_time": now})  # fmt: skip
    started = time.perf_counter()
    for offset in range(0, RAW_ROWS, CHUNK):
        insert_new(Span, spans[offset : offset + CHUNK])
    spans_s = RAW_ROWS / (time.perf_counter() - started)
    MetricPoint.objects.filter(series__in=series).delete()
    MetricSeries.objects.filter(name="raw_bench").delete()
    Span.objects.all().delete()
    return {"points_s": points_s, "spans_s": spans_s}


def fill(rng: random.Random) -> float:
    """10,000 agents in the registry and beating; POINTS points over the last week, through the
    same ingest code the API runs. Returns the seconds it took."""
    from coordination.heartbeats import LAST_BEATS
    from coordination.models import Agent
    from core.redis import get_redis
    from metrics.services import ingest_metrics

    started = time.perf_counter()
    now = datetime.now(UTC)
    Agent.objects.bulk_create([Agent(agent_id=f"agent-{i}", status="running", last_seen_at=now) for i in range(AGENTS)],
                              batch_size=2000)  # fmt: skip
    get_redis().zadd(LAST_BEATS, {f"agent-{i}": time.time() for i in range(AGENTS)})
    for _ in range(0, POINTS, CHUNK):
        items = [stamped(point(rng, now), rng, now - timedelta(seconds=rng.uniform(0, 7 * 86400))) for _ in range(CHUNK)]
        batch = ingest_metrics(items, lambda agent: True)
        if batch.failed:
            raise RuntimeError(f"points refused: {list(batch.errors())[:3]}")
    return time.perf_counter() - started


def collection_us(calls: int = 20_000) -> dict:
    """Microseconds per SDK call, best of three rounds; no server, so records stay in the spool."""
    import tempfile

    from telemetry_client import MetricsRecorder, TelemetryClient, Tracer

    with tempfile.TemporaryDirectory() as spool:
        client = TelemetryClient(api_url="", spool_dir=spool)
        recorder, tracer = MetricsRecorder("agent-0", memory=client), Tracer("agent-0", memory=client)
        calls_of = {
            "metric_us": lambda: recorder.increment("agent_executions_total", agent_type="crawler", status="success"),
            "span_us": lambda: tracer.end_span(tracer.start_trace("step")),
        }
        result = {
            name: min(timed(lambda call=call: [call() for _ in range(calls)], 3)) / calls * 1e6 for name, call in calls_of.items()
        }
        client.close()
    return result


def settle() -> None:
    """After a million inserts: the planner's statistics, and no autovacuum running beside the
    timings (on PostgreSQL it starts on its own right after such a load), as in steady state."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")


def timed(call, repeat: int = 5) -> list[float]:
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return seconds


def run(db: str) -> dict:
    with environment(db) as env:
        from django.conf import settings

        from bench.ingest import agent_headers, written
        from core.api import validate
        from metrics import query as engine_of
        from metrics.schemas import MetricQuery

        env = {**env, "METRICS_MAX_SERIES": str(AGENTS * 2)}  # the servers' and this process's (fill)
        settings.METRICS_MAX_SERIES = AGENTS * 2
        rng = random.Random(11)
        first = raw_rows_per_second()
        headers = agent_headers(scopes=("runs:write", "runs:read", "metrics:read"))
        with servers(env, WORKERS) as bases:  # the load's connections spread evenly over the processes
            load = Load(bases, headers, WORKERS * 2, SECONDS)
            now = datetime.now(UTC)
            warm_up = [json.dumps([stamped(point(rng, now), rng, now)]).encode() for _ in range(200)]
            load.run("/api/v1/metrics", warm_up, {200, 429})
            shapes = [point(rng, now) for _ in range(SERIES)]  # a batch's points fall on 200 series, as a busy fleet's do
            batches = [json.dumps([stamped(rng.choice(shapes), rng, now) for _ in range(CHUNK)]).encode() for _ in range(80)]
            # Past capacity the server sheds with 429 (WEB_MAX_LOOP_LAG_MS on a loaded machine): counted, not stored.
            points = load.run("/api/v1/metrics", batches, {200, 429})
            written(points, 200)
            traces = [
                json.dumps([span(rng, f"{rng.getrandbits(128) or 1:032x}", i) for i in range(500)]).encode() for _ in range(80)
            ]
            spans = load.run("/api/v1/ingest", traces, {200, 429})
            written(spans, 200)
            # Raw again after the loads, and their mean: other work on a shared machine moved the
            # raw rate by half between one minute and the next, which one measurement took as the server's.
            again = raw_rows_per_second()
            raw = {name: (rate + again[name]) / 2 for name, rate in first.items()}
            loaded = fill(rng)
            settle()
            scrape_headers = {
                "Authorization": headers["Authorization"],
                "Accept": "text/plain;version=0.0.4",
            }  # Prometheus's text
            with httpx.Client(base_url=bases[0], headers=scrape_headers, timeout=60) as client:
                body = client.get("/metrics").text
                scrape = timed(lambda: client.get("/metrics").raise_for_status())
            with httpx.Client(base_url=bases[0], headers=headers, timeout=60) as client:  # the query answers JSON only
                query = {"name": "agent_execution_duration_seconds", "labels": "agent_type:type-1,phase:phase-1",
                         "start": (now - timedelta(days=1.75)).isoformat(), "end": now.isoformat(), "interval": "1h"}  # fmt: skip
                answer = client.get("/api/v1/metrics/query", params=query).json()
                asked = timed(lambda: client.get("/api/v1/metrics/query", params=query).raise_for_status())
            engine = timed(lambda: engine_of.query(validate(MetricQuery, query)))
        collection = collection_us()
    series = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
    return {
        "database": db,
        "raw_points_s": raw["points_s"],
        "raw_spans_s": raw["spans_s"],
        "points_s": points["per_second"] * CHUNK,
        "points_batch_p50_ms": points["p50_ms"],
        "points_shed": points["shed"],
        "spans_s": spans["per_second"] * 500,
        "spans_batch_p50_ms": spans["p50_ms"],
        "spans_shed": spans["shed"],
        "fill_s": loaded,
        "scrape_samples": series,
        "scrape_bytes": len(body),
        "scrape_best_ms": min(scrape) * 1000,
        "scrape_median_ms": statistics.median(scrape) * 1000,
        "query_points": answer["summary"]["count"],
        "query_best_ms": min(asked) * 1000,
        "query_engine_best_ms": min(engine) * 1000,
        **collection,
    }


def report(result: dict) -> str:
    per_point_ms = 1000 / result["points_s"]
    per_span_ms = 1000 / result["spans_s"]
    per_thousand = result["query_best_ms"] / max(result["query_points"], 1) * 1000
    engine_per_thousand = result["query_engine_best_ms"] / max(result["query_points"], 1) * 1000
    return "\n".join(
        [
            f"metrics and traces on {result['database']} (uvicorn x{WORKERS}, loopback)",
            f"  raw insert of metric points        {result['raw_points_s']:9.0f} rows/s",
            f"  POST /api/v1/metrics x{CHUNK}        {result['points_s']:9.0f} points/s = "
            f"{result['points_s'] / result['raw_points_s']:6.1%} of raw; {per_point_ms:.3f} ms a point "
            f"(target: 0.1 ms); batch p50 {result['points_batch_p50_ms']:.0f} ms; {result['points_shed']} shed (429)",
            f"  raw insert of spans                {result['raw_spans_s']:9.0f} rows/s",
            f"  POST /api/v1/ingest x500 spans     {result['spans_s']:9.0f} spans/s  = "
            f"{result['spans_s'] / result['raw_spans_s']:6.1%} of raw; {per_span_ms:.3f} ms a span "
            f"(target: 0.2 ms); batch p50 {result['spans_batch_p50_ms']:.0f} ms; {result['spans_shed']} shed (429)",
            f"  {AGENTS:,} agents and {POINTS:,} points loaded in {result['fill_s']:.0f} s",
            f"  GET /metrics: {result['scrape_samples']:,} samples, {result['scrape_bytes'] / 1e6:.1f} MB, "
            f"best {result['scrape_best_ms']:.0f} ms, median {result['scrape_median_ms']:.0f} ms (target < 200 ms)",
            f"  query over {result['query_points']:,} points: the engine {result['query_engine_best_ms']:.1f} ms "
            f"= {engine_per_thousand:.1f} ms per 1,000 points (target: 10 ms); over HTTP {result['query_best_ms']:.1f} ms "
            f"= {per_thousand:.1f} ms per 1,000",
            f"  collection in the agent (SDK, into the spool): {result['metric_us']:.0f} us a metric (target: 100 us), "
            f"{result['span_us']:.0f} us a span (target: 200 us)",
        ]
    )


if __name__ == "__main__":
    from bench.results import main

    main("metrics", run, report)
