"""The server's own figures on /metrics: its requests, held waits, websockets and Celery queue.

A request costs no Redis round trip: each process tallies in memory, and every FLUSH_SECONDS its
event loop adds the tallies to one Redis hash (HINCRBY in one pipeline) and writes its gauges,
each in a field of its own stamped with the time, so that a process that died stops counting
after GAUGE_FRESH_SECONDS. /metrics reads Redis at scrape time, so any web process answers for
all. A process that stops loses its last second of counts; after Redis loses its data the
counters start again from zero (Prometheus's rate() takes that as a reset).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import socket
import time
from collections import Counter, defaultdict

from celery import current_app, signals
from kombu.transport.redis import PRIORITY_STEPS, Channel
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from core.redis import REDIS_DOWN, for_event_loop, get_async_redis, get_redis

logger = logging.getLogger(__name__)

COUNTERS_KEY = "telemetry:server:counters"  # hash: "<counter> <label>..." -> count
GAUGES_KEY = "telemetry:server:gauges"  # hash: "<gauge> <process>" -> "<value> <unix time>"
FLUSH_SECONDS = 1.0
GAUGE_FRESH_SECONDS = 15.0
# Upper bounds (s) of the request duration buckets, then +Inf.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SHED_REASONS = ("in_flight", "loop_lag")
CONNECTION_OUTCOMES = ("accepted", "refused")

# This process's tallies since its last flush (keys: a counter's name and labels), and its gauges.
_counts: Counter[tuple] = Counter()
_sums: defaultdict[tuple, float] = defaultdict(float)
_gauges: Counter[str] = Counter()
_flushers: dict = {}  # by event loop


def count(*key) -> None:
    """One more of the counter `key` (its name, then its labels' values)."""
    _counts[key] += 1


def add_to_gauge(name: str, amount: int) -> None:
    _gauges[name] += amount


def count_request(group: str, status: int, seconds: float | None) -> None:
    """A response, and how long it took (None: a held wait, kept out of the latency histogram)."""
    _counts["requests", group, status] += 1
    if seconds is not None:
        _counts["duration", group, bisect.bisect_left(BUCKETS, seconds)] += 1
        _sums[group] += seconds


def start_flushing() -> None:
    """Flush this process's tallies every FLUSH_SECONDS from the running event loop (from now on)."""
    for_event_loop(_flushers, lambda: asyncio.get_running_loop().create_task(_flush_forever(), name="selfmetrics"))


async def _flush_forever() -> None:
    failing = False
    while True:
        await asyncio.sleep(FLUSH_SECONDS)
        try:
            await flush()
        except Exception as exc:  # noqa: BLE001 - this task must outlive any failure: the counts wait
            if not failing:
                logger.warning("server metrics: not written to Redis (%s); kept until it answers", exc)
            failing = True
        else:
            failing = False


async def flush() -> None:
    """Add this process's tallies to Redis and write its gauges (kept for the next flush if Redis fails)."""
    counts, sums = dict(_counts), dict(_sums)
    _counts.clear()
    _sums.clear()
    pipe = get_async_redis().pipeline(transaction=False)
    for key, amount in counts.items():
        pipe.hincrby(COUNTERS_KEY, " ".join(map(str, key)), amount)
    for group, seconds in sums.items():
        pipe.hincrbyfloat(COUNTERS_KEY, f"duration_sum {group}", seconds)
    process, now = f"{socket.gethostname()}:{os.getpid()}", time.time()
    for name, value in _gauges.items():
        pipe.hset(GAUGES_KEY, f"{name} {process}", f"{value} {now}")
    try:
        await pipe.execute()
    except BaseException:
        _counts.update(counts)
        for group, seconds in sums.items():
            _sums[group] += seconds
        raise


@signals.task_failure.connect
def _count_task_failure(sender=None, **kwargs) -> None:
    """In the worker, which serves no requests: one command per failure, as it happens."""
    with contextlib.suppress(*REDIS_DOWN):
        get_redis().hincrby(COUNTERS_KEY, f"task_failures {sender.name}", 1)


def celery_queue_length(redis, queue: str) -> int:
    """Tasks waiting in `queue` on the Redis broker: kombu keeps one list per priority step."""
    names = [f"{queue}{Channel.sep}{step}" if step else queue for step in PRIORITY_STEPS]
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.llen(name)
    return sum(pipe.execute())


def _fresh_gauges(redis) -> Counter[str]:
    """Each gauge summed over the processes that wrote it lately; the fields of the others deleted."""
    totals: Counter[str] = Counter()
    stale = []
    for field, stamped in redis.hgetall(GAUGES_KEY).items():
        value, written = stamped.split()
        if time.time() - float(written) > GAUGE_FRESH_SECONDS:
            stale.append(field)
        else:
            totals[field.decode().split(" ", 1)[0]] += int(value)
    if stale:
        redis.hdel(GAUGES_KEY, *stale)
    return totals


class ServerMetrics:
    def collect(self):
        redis = get_redis()
        counters = {tuple(field.decode().split(" ")): float(value) for field, value in redis.hgetall(COUNTERS_KEY).items()}
        gauges = _fresh_gauges(redis)
        yield from self._requests(counters)
        shed = CounterMetricFamily(
            "telemetry_server_shed", "Requests refused by the load shedder (429), by reason", labels=["reason"]
        )
        for reason in SHED_REASONS:
            shed.add_metric([reason], counters.get(("shed", reason), 0))
        yield shed
        yield GaugeMetricFamily("telemetry_server_waits_held", "Long waits held open now", value=gauges["waits_held"])
        yield CounterMetricFamily("telemetry_server_waits", "Long waits held open", value=counters.get(("waits",), 0))
        yield GaugeMetricFamily(
            "telemetry_server_websocket_clients", "Websocket clients connected now", value=gauges["websocket_clients"]
        )
        yield from self._websockets(counters)
        queue = current_app.conf.task_default_queue
        length = GaugeMetricFamily("telemetry_server_celery_queue_length", "Tasks waiting in the Celery queue", labels=["queue"])
        length.add_metric([queue], celery_queue_length(redis, queue))
        yield length
        failures = CounterMetricFamily(
            "telemetry_server_celery_task_failures", "Celery tasks that failed, by task", labels=["task"]
        )
        yield _counted(failures, counters, "task_failures")

    def _requests(self, counters: dict):
        requests = CounterMetricFamily(
            "telemetry_server_requests", "HTTP responses, by endpoint group and status", labels=["group", "status"]
        )
        yield _counted(requests, counters, "requests")
        buckets: defaultdict[str, list[float]] = defaultdict(lambda: [0.0] * (len(BUCKETS) + 1))
        for (name, *labels), value in counters.items():
            if name == "duration":
                buckets[labels[0]][int(labels[1])] += value
        duration = HistogramMetricFamily(
            "telemetry_server_request_duration_seconds",
            "HTTP request durations, by endpoint group (held waits excepted)",
            labels=["group"],
        )
        bounds = [str(bound) for bound in BUCKETS] + ["+Inf"]
        for group, counts in sorted(buckets.items()):
            cumulative = [sum(counts[: index + 1]) for index in range(len(counts))]
            duration.add_metric([group], list(zip(bounds, cumulative, strict=True)), counters.get(("duration_sum", group), 0))
        yield duration

    def _websockets(self, counters: dict):
        connections = CounterMetricFamily(
            "telemetry_server_websocket_connections",
            "Websocket handshakes, accepted or refused (closed before it was accepted)",
            labels=["outcome"],
        )
        for outcome in CONNECTION_OUTCOMES:
            connections.add_metric([outcome], counters.get(("websocket_connections", outcome), 0))
        yield connections
        closes = CounterMetricFamily(
            "telemetry_server_websocket_closes", "Accepted websockets the server closed, by close code", labels=["code"]
        )
        yield _counted(closes, counters, "websocket_closes")


def _counted(family, counters: dict, name: str):
    """`family` with a sample per label set of the counter `name`, in label order."""
    for (counter, *labels), value in sorted(counters.items()):
        if counter == name:
            family.add_metric(labels, value)
    return family
