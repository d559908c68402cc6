"""Single writes by what they cost the server: the CPU time one web process (one uvicorn worker)
spends per answered request, for the bare DRF view, single POST /api/v1/runs and single PATCHes,
at CONCURRENCY clients, ROUNDS rounds taking turns, and per batch of BATCH_SIZE runs.

On a shared machine the requests per second of bench.ingest follow the CPU the other jobs leave
(the bare view of the same code answered 424 and 128 req/s in two runs 25 minutes apart); the CPU time a request costs
hardly does, so the ratio bare / single write here is the steadier reading of the same target
(single POST >= 50% of the bare view)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bench.harness import Load, environment
from bench.ingest import BATCH_SIZE, CONCURRENCY, PATCH_BODY, agent_headers, sample_run, stored_event_ids
from tests.services import asgi_server

SECONDS = 5.0
ROUNDS = 2
RUNS_PER_ROUND = 20_000


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Measured:
    """Loads on one server process, each with the CPU time it cost that process."""

    def __init__(self, base: str, pid: int, headers: dict):
        self.base, self.pid, self.headers = base, pid, headers

    def run(self, path, bodies: list[bytes], ok: int, method: str = "POST", clients: int = CONCURRENCY) -> dict:
        before = cpu_seconds(self.pid)
        result = Load(self.base, self.headers, clients, SECONDS, method=method).run(path, bodies, {ok, 429})
        answered = result["statuses"].get(ok, 0)
        return {
            "cpu_ms": 1000 * (cpu_seconds(self.pid) - before) / max(1, result["requests"]),
            "req_s": answered / result["seconds"],
            "p99_ms": result["p99_ms"],
            "answered": answered,
        }


def run(db: str) -> dict:
    with environment(db) as env:
        headers = agent_headers()
        started = []
        with asgi_server(env, 1, started=started) as base:
            load = Measured(base, started[0].pid, headers)
            load.run("/api/bench/bare", [b"{}"] * 3000, 200)  # warm up
            rounds = []
            for index in range(ROUNDS):
                runs = [sample_run(i) for i in range(index * RUNS_PER_ROUND, (index + 1) * RUNS_PER_ROUND)]
                bare = load.run("/api/bench/bare", [json.dumps(run).encode() for run in runs], 200)
                post = load.run("/api/v1/runs", [json.dumps(run).encode() for run in runs], 201)
                stored = stored_event_ids([run["event_id"] for run in runs[: post["answered"]]])
                patch = load.run([f"/api/v1/runs/{event_id}" for event_id in stored], [PATCH_BODY] * len(stored), 200, "PATCH")
                rounds.append({"bare": bare, "post": post, "patch": patch})
            batches = [json.dumps([sample_run(i) for i in range(BATCH_SIZE)]).encode() for _ in range(30)]
            batch = load.run("/api/v1/runs/batch", batches, 200, clients=2)
    mean = {kind: sum(r[kind]["cpu_ms"] for r in rounds) / ROUNDS for kind in ("bare", "post", "patch")}
    return {
        "database": db,
        "rounds": rounds,
        "cpu_ms": mean,
        "batch_cpu_ms": batch["cpu_ms"],
        "batch_rows_s": batch["req_s"] * BATCH_SIZE,
    }


def report(result: dict) -> str:
    cpu = result["cpu_ms"]
    lines = [f"single writes on {result['database']}: CPU of one uvicorn worker per answered request, {CONCURRENCY} clients"]
    for kind, label in (("bare", "bare DRF view"), ("post", "POST /api/v1/runs"), ("patch", "PATCH /api/v1/runs/{id}")):
        rates = ", ".join(f"{r[kind]['req_s']:.0f}" for r in result["rounds"])
        p99s = ", ".join(f"{r[kind]['p99_ms']:.0f}" for r in result["rounds"])
        share = "" if kind == "bare" else f"   bare / this {cpu['bare'] / cpu[kind]:6.1%} (target >= 50%)"
        lines.append(f"  {label:24} {cpu[kind]:5.2f} ms{share}   req/s {rates}, p99 {p99s} ms")
    lines.append(
        f"  batch POST x{BATCH_SIZE}, 2 clients  {result['batch_cpu_ms']:5.0f} ms a batch   {result['batch_rows_s']:.0f} rows/s"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    from bench.results import main

    main("single_writes", run, report)
