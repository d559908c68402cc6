"""Ingestion with a dead receiver configured: runs batch ingest (POST /api/v1/runs/batch) on two
one-worker servers, with a real Celery worker and beat running, first with no channel, then with
a channel forwarding every run.started and run.ended to a receiver that accepts connections and
never answers (each try waits out the webhook timeout). Rounds alternate (none, dead, ...) ROUNDS
times each, and the medians are compared, so that the database growing and beat's periodic work
weigh on both alike. Once forwarding has read the whole of a dead round, its channel is deleted
with its deliveries: the next round neither pays for that forwarding nor inherits a backlog.
Target: with the dead receiver, within 5% of without. Beside it, what the rounds cost the worker
and beat in CPU per run ingested (during the round and the 2 s after it): on these two cores
that CPU is taken from the web processes, and it varies less than throughput does.
"""

from __future__ import annotations

import json
import socket
import statistics
import time

import psutil

from bench.harness import Load, environment, servers
from bench.ingest import BATCH_SIZE, agent_headers, sample_run
from tests.services import celery_processes

WORKERS = 2
SECONDS = 5.0
BATCHES = 40
ROUNDS = 10
CATCH_UP_SECONDS = 60  # how long after a dead round forwarding may take to have read all of it


def run(db: str) -> dict:
    with environment(db) as env:
        from django.db.models import Sum

        from core.redis import get_redis
        from core.streams import stream_key
        from notifications.forwarding import FORWARD_CURSOR, FORWARD_LOCK
        from notifications.models import Delivery, NotificationChannel

        # No shedding on loop lag: a batch of 1,000 runs validated in a thread can hold the GIL
        # long enough for a 429 now and then, and a refused batch would end the comparison.
        env = {**env, "FORWARD_SECONDS": "1", "DELIVERY_RETRY_SECONDS": "1", "WEB_MAX_LOOP_LAG_MS": "0"}
        headers = agent_headers()
        dead = socket.socket()  # listens (the kernel completes handshakes) but never accepts nor answers
        dead.bind(("127.0.0.1", 0))
        dead.listen(1024)
        rates, background_cpu = {"none": [], "dead": []}, {"none": [], "dead": []}
        ingested = forwarded = pending = 0
        catch_up: list[float] = []
        with servers(env, WORKERS) as bases, celery_processes(env) as celery:
            load = Load(bases, headers, WORKERS * 2, SECONDS)
            offset = 0
            for number, receiver in enumerate(("none", "dead") * ROUNDS):
                if receiver == "dead":
                    channel = NotificationChannel.objects.create(
                        name=f"dead {number}", kind="webhook", target=f"http://127.0.0.1:{dead.getsockname()[1]}/hook",
                        forwards=["run.started", "run.ended"],
                    )  # fmt: skip
                batches = [json.dumps([sample_run(offset + i * BATCH_SIZE + j) for j in range(BATCH_SIZE)]).encode()
                           for i in range(BATCHES)]  # fmt: skip
                offset += BATCHES * BATCH_SIZE
                cpu = cpu_seconds(celery)
                result = load.run("/api/v1/runs/batch", batches, {200})
                time.sleep(2)  # let forwarding catch up before the next round
                rates[receiver].append(result["per_second"] * BATCH_SIZE)
                background_cpu[receiver].append((cpu_seconds(celery) - cpu) / (result["requests"] * BATCH_SIZE) * 1e6)
                if receiver == "dead":
                    ingested += result["requests"] * BATCH_SIZE
                    mine = Delivery.objects.filter(channel=channel)
                    # Forwarding has read the stream to its end before the next round, which would
                    # otherwise pay for the rest.
                    cursor, stream = FORWARD_CURSOR.format(channel=channel.pk, event_type="run.ended"), stream_key("run.ended")
                    deadline = time.monotonic() + CATCH_UP_SECONDS
                    while get_redis().get(cursor) != get_redis().xrevrange(stream, count=1)[0][0]:
                        if time.monotonic() > deadline:
                            break
                        time.sleep(0.2)
                    catch_up.append(time.monotonic() - deadline + CATCH_UP_SECONDS)
                    forwarded += mine.aggregate(n=Sum("records"))["n"] or 0
                    pending += mine.filter(status=Delivery.Status.PENDING).aggregate(n=Sum("records"))["n"] or 0
                    # Deleted with its deliveries once no forwarding pass holds it: no round inherits a backlog.
                    NotificationChannel.objects.filter(pk=channel.pk).update(enabled=False)
                    while get_redis().exists(FORWARD_LOCK):
                        time.sleep(0.05)
                    channel.delete()
        dead.close()
    without, with_dead = statistics.median(rates["none"]), statistics.median(rates["dead"])
    return {
        "database": db,
        "rows_s_without": without,
        "rows_s_with_dead_receiver": with_dead,
        "ratio": with_dead / without,
        "rounds": rates,
        "worker_cpu_us_per_run_without": statistics.median(background_cpu["none"]),
        "worker_cpu_us_per_run_with_dead_receiver": statistics.median(background_cpu["dead"]),
        "runs_ingested_with_dead_receiver": ingested,
        "records_forwarded": forwarded,
        "records_pending": pending,
        "forwarding_caught_up_after_s": max(catch_up),
    }


def cpu_seconds(processes: list) -> float:
    """CPU seconds the Celery worker (with its pool) and beat have used so far."""
    total = 0.0
    for process in processes:
        tree = psutil.Process(process.pid)
        for member in [tree, *tree.children(recursive=True)]:
            try:
                times = member.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
    return total


def report(result: dict) -> str:
    return "\n".join(
        [
            f"ingestion with a dead receiver on {result['database']} ({WORKERS} uvicorns, Celery worker and beat, loopback)",
            f"  runs batch x{BATCH_SIZE}, no channel {result['rows_s_without']:9.0f} rows/s (medians, {ROUNDS} rounds)",
            f"  runs batch x{BATCH_SIZE}, dead receiver forwarding {result['rows_s_with_dead_receiver']:7.0f} rows/s = "
            f"{result['ratio']:6.1%} of without (target >= 95%)",
            f"  the worker and beat's CPU a run ingested (the round and 2 s after it): "
            f"{result['worker_cpu_us_per_run_without']:.0f} us without a channel, "
            f"{result['worker_cpu_us_per_run_with_dead_receiver']:.0f} us with the dead receiver",
            f"  forwarded to the dead receiver: {result['records_forwarded']:,} records for "
            f"{result['runs_ingested_with_dead_receiver']:,} runs ended, {result['records_pending']:,} waiting a retry; "
            f"forwarding had read each round within {result['forwarding_caught_up_after_s']:.1f} s after it "
            "(events trimmed before it read them are logged and not forwarded)",
        ]
    )


if __name__ == "__main__":
    from bench.results import main

    main("delivery", run, report)
