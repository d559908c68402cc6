"""Runs ingest: single POST /api/v1/runs (and single PATCHes) at 1, 16 and 64 concurrent clients,
and POST /api/v1/runs/batch, against the raw limits of the same machine in the same run:
`bulk_create` of the same model on the same database, and a bare DRF view on the same server
setup. Targets: batch >= 50% of bulk_create rows/s; single POST >= 50% of the bare view's
requests/s, p99 <= 100 ms at 64 clients."""

from __future__ import annotations

import json
import time

from bench.harness import Load, environment, servers
from tests.runs.factories import run_payload

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


PATCH_BODY = json.dumps({"status": "partial", "items_failed": 2, "output_summary": "retried"}).encode()
FIGURES = {"req_s": "per_second", "p50_ms": "p50_ms", "p99_ms": "p99_ms", "shed": "shed"}


def stored_event_ids(event_ids: list[str]) -> list[str]:
    from runs.models import Run

    found = set(Run.objects.filter(event_id__in=event_ids).values_list("event_id", flat=True))
    return [event_id for event_id in event_ids if event_id in found]


def written(result: dict, status: int) -> None:
    """Requests per second count the writes answered `status`; those shed with 429 apart."""
    result["per_second"] = result["statuses"].get(status, 0) / result["seconds"]
    result["shed"] = result["statuses"].get(429, 0)


def levels() -> list[int]:
    """The concurrent clients of the single writes: one, CONCURRENCY (16) and four times as many."""
    return sorted({1, CONCURRENCY, 4 * CONCURRENCY})


def run(db: str) -> dict:
    with environment(db) as env:
        raw_rows = raw_bulk_create_rows_per_second()
        headers = agent_headers()
        with servers(env, WORKERS) as bases:  # the load's connections spread evenly over the processes
            load = Load(bases, headers, CONCURRENCY, SECONDS)
            load.run("/api/bench/bare", [b"{}"] * 2000, {200, 429})  # warm up every worker
            # A loaded machine sheds the bare view's requests too (loop lag): counted apart, as the writes'.
            bare = load.run("/api/bench/bare", [json.dumps(sample_run(i)).encode() for i in range(100_000)], {200, 429})
            written(bare, 200)
            singles, patches = {}, {}
            for clients in levels():
                created = [sample_run(i) for i in range(50_000)]
                # Past capacity the server sheds with 429 (WEB_MAX_IN_FLIGHT, WEB_MAX_LOOP_LAG_MS): counted, not stored.
                singles[clients] = Load(bases, headers, clients, SECONDS).run(
                    "/api/v1/runs", [json.dumps(run).encode() for run in created], {201, 429}
                )
                written(singles[clients], 201)
                stored = stored_event_ids([run["event_id"] for run in created[: singles[clients]["requests"]]])
                patches[clients] = Load(bases, headers, clients, SECONDS, method="PATCH").run(
                    [f"/api/v1/runs/{event_id}" for event_id in stored], [PATCH_BODY] * len(stored), {200, 429}
                )
                written(patches[clients], 200)
            single = singles[CONCURRENCY]
            batches = [json.dumps([sample_run(i) for i in range(BATCH_SIZE)]).encode() for _ in range(60)]
            batch = Load(bases, headers, WORKERS * 2, SECONDS).run("/api/v1/runs/batch", batches, {200, 429})
            written(batch, 200)
    batch_rows = batch["per_second"] * BATCH_SIZE
    return {
        **{f"single_post_{n}_{figure}": singles[n][key] for n in singles for figure, key in FIGURES.items()},
        **{f"patch_{n}_{figure}": patches[n][key] for n in patches for figure, key in FIGURES.items()},
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
            *(
                f"  {label:<6} {n:>2} client{'s' if n > 1 else ' '}       {result[f'{kind}_{n}_req_s']:9.0f} req/s   "
                f"{result[f'{kind}_{n}_req_s'] / result['bare_drf_req_s']:6.1%} of bare DRF   "
                f"p50 {result[f'{kind}_{n}_p50_ms']:.1f} ms, p99 {result[f'{kind}_{n}_p99_ms']:.1f} ms"
                + (f", {result[f'{kind}_{n}_shed']} shed (429)" if result[f"{kind}_{n}_shed"] else "")
                + ("  (target p99 <= 100 ms)" if n == max(levels()) else "")
                for kind, label in (("single_post", "POST"), ("patch", "PATCH"))
                for n in levels()
                if f"{kind}_{n}_req_s" in result
            ),
        ]
    )


if __name__ == "__main__":
    from bench.results import main

    main("ingest", run, report)
