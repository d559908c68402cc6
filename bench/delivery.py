"""Ingestion with a dead receiver configured: runs batch ingest (POST /api/v1/runs/batch) with a
real Celery worker and beat running, first with no channel, then with a channel forwarding every
run.started and run.ended to a receiver that accepts connections and never answers (each try
waits out the webhook timeout). Rounds alternate (none, dead, ...) ROUNDS times each, and the
medians are compared, so that the database growing and beat's periodic work weigh on both alike.
Target: with the dead receiver, within 5% of without.
"""

from __future__ import annotations

import json
import socket
import statistics
import time

from bench.harness import Load, environment
from bench.ingest import BATCH_SIZE, agent_headers, sample_run
from tests.services import asgi_server, celery_processes

WORKERS = 2
SECONDS = 5.0
BATCHES = 40
ROUNDS = 6


def run(db: str) -> dict:
    with environment(db) as env:
        from core.models import Delivery, NotificationChannel

        env = {**env, "FORWARD_SECONDS": "1", "DELIVERY_RETRY_SECONDS": "1"}
        headers = agent_headers()
        dead = socket.socket()  # listens (the kernel completes handshakes) but never accepts nor answers
        dead.bind(("127.0.0.1", 0))
        dead.listen(1024)
        rates = {"none": [], "dead": []}
        ingested = forwarded = 0
        with asgi_server(env, WORKERS) as base, celery_processes(env):
            load = Load(base, headers, WORKERS * 2, SECONDS)
            offset = 0
            for number, receiver in enumerate(("none", "dead") * ROUNDS):
                NotificationChannel.objects.update(enabled=False)  # paused: its waiting deliveries too
                if receiver == "dead":
                    channel = NotificationChannel.objects.create(
                        name=f"dead {number}", kind="webhook", target=f"http://127.0.0.1:{dead.getsockname()[1]}/hook",
                        forwards=["run.started", "run.ended"],
                    )  # fmt: skip
                batches = [json.dumps([sample_run(offset + i * BATCH_SIZE + j) for j in range(BATCH_SIZE)]).encode()
                           for i in range(BATCHES)]  # fmt: skip
                offset += BATCHES * BATCH_SIZE
                result = load.run("/api/v1/runs/batch", batches, {200})
                rates[receiver].append(result["per_second"] * BATCH_SIZE)
                time.sleep(2)  # let forwarding catch up before the next round
                if receiver == "dead":
                    ingested += result["requests"] * BATCH_SIZE
                    forwarded += Delivery.objects.filter(channel=channel).count()
            pending = Delivery.objects.filter(status=Delivery.Status.PENDING).count()
        dead.close()
    without, with_dead = statistics.median(rates["none"]), statistics.median(rates["dead"])
    return {
        "database": db,
        "rows_s_without": without,
        "rows_s_with_dead_receiver": with_dead,
        "ratio": with_dead / without,
        "rounds": rates,
        "runs_ingested_with_dead_receiver": ingested,
        "deliveries": forwarded,
        "deliveries_pending": pending,
    }


def report(result: dict) -> str:
    return "\n".join(
        [
            f"ingestion with a dead receiver on {result['database']} (uvicorn x{WORKERS}, Celery worker and beat, loopback)",
            f"  runs batch x{BATCH_SIZE}, no channel {result['rows_s_without']:9.0f} rows/s (medians, {ROUNDS} rounds)",
            f"  runs batch x{BATCH_SIZE}, dead receiver forwarding {result['rows_s_with_dead_receiver']:7.0f} rows/s = "
            f"{result['ratio']:6.1%} of without (target >= 95%)",
            f"  forwarded to the dead receiver: {result['deliveries']:,} deliveries for "
            f"{result['runs_ingested_with_dead_receiver']:,} runs ended, {result['deliveries_pending']:,} waiting a retry",
        ]
    )


if __name__ == "__main__":
    from bench.results import main

    main("delivery", run, report)
