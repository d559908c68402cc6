"""Publish -> websocket delivery of the live feed with 1, 50 and 200 clients, beside a raw
channels-redis group_send to the same number of bare consumers, measured in the same run.

Each client count gets two phases: latency (events published at a steady LATENCY_RATE, p50/p99
from publish to receipt) and throughput (THROUGHPUT_EVENTS published as fast as the publisher
can; deliveries/s until every client has them all or DEADLINE passes). One machine, one clock.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time

from websockets.asyncio.client import connect

from bench.harness import environment
from bench.ingest import agent_headers
from tests.services import asgi_server

WORKERS = 2
CLIENT_COUNTS = [1, 50, 200]
LATENCY_RATE = 50  # events/s
LATENCY_SECONDS = 4
THROUGHPUT_EVENTS = 1000
DEADLINE = 30.0


class Clients:
    """`count` websocket clients; records (publish -> receipt) latency of every event they get."""

    def __init__(self, url: str, headers: dict, count: int, raw: bool):
        self.url, self.headers, self.count, self.raw = url, headers, count, raw
        self.latencies_ms: list[float] = []
        self.received = 0

    async def __aenter__(self):
        self.sockets = await asyncio.gather(*(self._open() for _ in range(self.count)))
        self.tasks = [asyncio.create_task(self._read(socket)) for socket in self.sockets]
        return self

    async def _open(self):
        socket = await connect(self.url, additional_headers=self.headers, max_size=None, open_timeout=30)
        if not self.raw:
            while json.loads(await socket.recv())["type"] != "ready":
                pass
        return socket

    async def _read(self, socket):
        async for message in socket:
            body = json.loads(message)
            now = time.time_ns()
            for event in [body] if self.raw else body["events"]:
                self.latencies_ms.append((now - event["data"]["sent_ns"]) / 1e6)
                self.received += 1

    async def __aexit__(self, *exc):
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*(socket.close() for socket in self.sockets), return_exceptions=True)

    def reset(self):
        self.latencies_ms, self.received = [], 0


def publisher(raw: bool):
    """An async function publishing one event the way the server under test receives them."""
    if raw:
        from channels.layers import get_channel_layer

        from bench.raw_ws import GROUP

        layer = get_channel_layer()

        async def publish(n: int):
            text = json.dumps({"event_type": "bench.tick", "data": {"n": n, "sent_ns": time.time_ns()}})
            await layer.group_send(GROUP, {"type": "bench.event", "text": text})

    else:
        from core import events

        async def publish(n: int):
            await events.publish_async(events.Event("bench.tick", {"n": n, "sent_ns": time.time_ns()}))

    return publish


async def measure(url: str, headers: dict, count: int, raw: bool) -> dict:
    publish = publisher(raw)
    async with Clients(url, headers, count, raw) as clients:
        await publish(-1)  # warm up
        await asyncio.sleep(0.5)
        clients.reset()
        for n in range(LATENCY_RATE * LATENCY_SECONDS):
            await publish(n)
            await asyncio.sleep(1 / LATENCY_RATE)
        await _until(lambda: clients.received >= count * LATENCY_RATE * LATENCY_SECONDS, 5.0)
        latencies = sorted(clients.latencies_ms)
        latency_received = clients.received
        clients.reset()
        started = time.perf_counter()
        for n in range(THROUGHPUT_EVENTS):
            await publish(n)
        await _until(lambda: clients.received >= count * THROUGHPUT_EVENTS, DEADLINE)
        elapsed = time.perf_counter() - started
    return {
        "clients": count,
        "p50_ms": statistics.median(latencies) if latencies else None,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] if latencies else None,
        "latency_delivered": latency_received / (count * LATENCY_RATE * LATENCY_SECONDS),
        "deliveries_s": clients.received / elapsed,
        "throughput_delivered": clients.received / (count * THROUGHPUT_EVENTS),
    }


async def _until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def run(db: str) -> dict:
    with environment(db) as env:
        env = {**env, "WEBSOCKETS_PER_KEY": str(max(CLIENT_COUNTS))}  # the clients share one key
        headers = {"Authorization": agent_headers(("streams:read",))["Authorization"]}
        results = {"database": db, "workers": WORKERS, "feed": [], "raw": []}
        with asgi_server(env, WORKERS) as base:
            for count in CLIENT_COUNTS:
                results["feed"].append(asyncio.run(measure(f"{base.replace('http', 'ws')}/ws/live/", headers, count, False)))
        with asgi_server(env, WORKERS, app="bench.raw_ws:application") as base:
            for count in CLIENT_COUNTS:
                results["raw"].append(asyncio.run(measure(f"{base.replace('http', 'ws')}/raw/", {}, count, True)))
    for feed, raw in zip(results["feed"], results["raw"], strict=True):
        feed["vs_raw_rate"] = feed["deliveries_s"] / raw["deliveries_s"]
    return results


def report(result: dict) -> str:
    lines = [
        f"live feed publish -> websocket (uvicorn x{result['workers']}, loopback; latency at {LATENCY_RATE} events/s, "
        f"rate with {THROUGHPUT_EVENTS} events at once)"
    ]
    for feed, raw in zip(result["feed"], result["raw"], strict=True):
        raw_delivered = min(raw["latency_delivered"], raw["throughput_delivered"])
        lines.append(
            f"  {feed['clients']:3d} clients  feed p50 {feed['p50_ms']:6.1f} ms  p99 {feed['p99_ms']:6.1f} ms (target <= 50)  "
            f"{feed['deliveries_s']:8.0f} deliveries/s = {feed['vs_raw_rate']:6.1%} of raw (target >= 50%)  "
            f"({min(feed['latency_delivered'], feed['throughput_delivered']):.0%} delivered)"
        )
        lines.append(
            f"               raw  p50 {raw['p50_ms']:6.1f} ms  p99 {raw['p99_ms']:6.1f} ms            "
            f"{raw['deliveries_s']:8.0f} deliveries/s  ({raw_delivered:.0%} delivered)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    from bench.results import main

    main("live", run, report)
