"""Runs ingest: single POST /api/v1/runs and POST /api/v1/runs/batch, against the raw limits of the
same machine in the same run: `bulk_create` of the same model on the same database, and a bare
DRF view on the same server setup. Targets: batch >= 50% of bulk_create rows/s; single POST >=
50% of the bare view's requests/s."""

from __future__ import annotations

import json
import time

from bench.harness import Load, environment
from tests.runs.factories import run_payload
from tests.services import asgi_server

WORKERS = 2
CONCURRENCY = 16
SECONDS = 8.0
BATCH_SIZE = 1000
RAW_ROWS = 20_000


def sample_run(index: int) -> dict:
    return run_payload(
        agent_name=f"agent-{index % 50}",
        status="success",
        items_discovered=10,
        items_succeeded=9,
        items_failed=1,
        duration_ms=1234,
        input_summary="input.csv",
        output_summary="9 rows written",
        metrics_json={"tokens": 1200, "cost_usd": 0.01},
        git_repo="https://github.com/acme/site",
        host="bench-host",
    )


def raw_bulk_create_rows_per_second() -> float:
    from runs.models import Run
    from runs.schemas import RunIn

    rows = [Run(**RunIn.model_validate(sample_run(i)).model_fields_for_db()) for i in range(RAW_ROWS)]
    start = time.perf_counter()
    for offset in range(0, RAW_ROWS, BATCH_SIZE):
        Run.objects.bulk_create(rows[offset : offset + BATCH_SIZE])
    elapsed = time.perf_counter() - start
    Run.objects.all().delete()
    return RAW_ROWS / elapsed


def agent_headers(scopes: tuple[str, ...] = ("runs:write", "runs:read"), agents: tuple[str, ...] = ("agent-*",)) -> dict:
    from core.models import AgentKey

    key = AgentKey(name="bench", agents=list(agents), scopes=list(scopes))
    raw = AgentKey.objects.assign_key(key)
    key.save()
    return {"Authorization": f"Api-Key {raw}", "Content-Type": "application/json"}


def run(db: str) -> dict:
    with environment(db) as env:
        raw_rows = raw_bulk_create_rows_per_second()
        headers = agent_headers()
        with asgi_server(env, WORKERS) as base:
            load = Load(base, headers, CONCURRENCY, SECONDS)
            load.run("/api/bench/bare", [b"{}"] * 2000, {200})  # warm up every worker
            bare = load.run("/api/bench/bare", [json.dumps(sample_run(i)).encode() for i in range(100_000)], {200})
            single = load.run("/api/v1/runs", [json.dumps(sample_run(i)).encode() for i in range(50_000)], {201})
            batches = [json.dumps([sample_run(i) for i in range(BATCH_SIZE)]).encode() for _ in range(60)]
            batch = Load(base, headers, WORKERS * 2, SECONDS).run("/api/v1/runs/batch", batches, {200})
    batch_rows = batch["per_second"] * BATCH_SIZE
    return {
        "database": db,
        "raw_bulk_create_rows_s": raw_rows,
        "bare_drf_req_s": bare["per_second"],
        "single_post_req_s": single["per_second"],
        "single_post_p50_ms": single["p50_ms"],
        "single_post_p99_ms": single["p99_ms"],
        "batch_rows_s": batch_rows,
        "batch_p50_ms": batch["p50_ms"],
        "single_vs_bare": single["per_second"] / bare["per_second"],
        "batch_vs_bulk_create": batch_rows / raw_rows,
    }


def report(result: dict) -> str:
    return "\n".join(
        [
            f"runs ingest on {result['database']} (uvicorn x{WORKERS}, {CONCURRENCY} connections, loopback)",
            f"  raw bulk_create           {result['raw_bulk_create_rows_s']:9.0f} rows/s",
            f"  batch POST x{BATCH_SIZE}          {result['batch_rows_s']:9.0f} rows/s   "
            f"{result['batch_vs_bulk_create']:6.1%} of bulk_create (target >= 50%)   p50 {result['batch_p50_ms']:.0f} ms",
            f"  bare DRF view             {result['bare_drf_req_s']:9.0f} req/s",
            f"  single POST /api/v1/runs  {result['single_post_req_s']:9.0f} req/s   "
            f"{result['single_vs_bare']:6.1%} of bare DRF (target >= 50%)   "
            f"p50 {result['single_post_p50_ms']:.1f} ms, p99 {result['single_post_p99_ms']:.1f} ms",
        ]
    )


if __name__ == "__main__":
    from bench.results import main

    main("ingest", run, report)
