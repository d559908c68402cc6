"""The SDK's cost in the agent's thread, and what one agent process delivers end to end.

Targets: log_event median <= 20 us and p99 <= 200 us (in a thread, and from a coroutine);
start_run median <= 100 us (far under the 5-10 ms a recording call may cost an agent); one agent process
>= 10,000 events/s delivered to the server; the @traced decorator adds <= 5 us (median) to the
span it records."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench.harness import environment
from operations.embedded_redis import free_port
from tests.services import asgi_server

CALLS = 20_000
THROUGHPUT_EVENTS = 100_000
EVENTS_PER_RUN = 1000


def _client(url: str, key: str, spool: Path):
    from telemetry_client import TelemetryClient, TelemetryConfig

    return TelemetryClient(TelemetryConfig(api_url=url, api_key=key, spool_dir=spool))


def _percentiles(samples_ns: list[int]) -> dict:
    samples_ns.sort()
    return {"median_us": statistics.median(samples_ns) / 1000, "p99_us": samples_ns[int(len(samples_ns) * 0.99)] / 1000}


def call_costs(client) -> dict:
    """Median and p99 of each call, timed one by one in the agent's thread."""
    starts, ends, events, metrics = [], [], [], []
    clock = time.perf_counter_ns
    for _ in range(CALLS // 100):
        t0 = clock()
        run_id = client.start_run("agent-bench", "bench")
        starts.append(clock() - t0)
        for step in range(100):
            t0 = clock()
            client.log_event(run_id, "step", {"n": step, "note": "a typical small payload"})
            events.append(clock() - t0)
        t0 = clock()
        client.set_metrics(run_id, items_discovered=100, items_succeeded=99, items_failed=1)
        metrics.append(clock() - t0)
        t0 = clock()
        client.end_run(run_id, status="success")
        ends.append(clock() - t0)
    return {
        "log_event": _percentiles(events),
        "set_metrics": _percentiles(metrics),
        "start_run": _percentiles(starts),
        "end_run": _percentiles(ends),
    }


def coroutine_costs(client) -> dict:
    """log_event called from a coroutine, in a running event loop, timed one by one."""
    clock = time.perf_counter_ns

    async def agent() -> list[int]:
        run_id, samples = client.start_run("agent-bench", "bench"), []
        for step in range(CALLS):
            t0 = clock()
            client.log_event(run_id, "step", {"n": step, "note": "a typical small payload"})
            samples.append(clock() - t0)
        client.end_run(run_id, status="success")
        return samples

    return _percentiles(asyncio.run(agent()))


def decorator_overhead(client) -> dict:
    """Medians of a no-op: bare, in `with tracer.span()`, and decorated with `@tracer.traced`. The
    decorator's cost is what it adds to the span; the span's own (recorded into the spool) is the
    rest of decorated minus bare."""
    from telemetry_client import Tracer

    tracer = Tracer("agent-bench", client)

    def bare() -> None:
        pass

    def in_span() -> None:
        with tracer.span("bare"):
            pass

    decorated = tracer.traced(bare)
    clock = time.perf_counter_ns
    samples: dict[str, list[int]] = {"bare": [], "span": [], "traced": []}
    for _ in range(CALLS // 100):
        for name, call in (("bare", bare), ("span", in_span), ("traced", decorated)):
            for _ in range(100):
                t0 = clock()
                call()
                samples[name].append(clock() - t0)
    medians = {name: statistics.median(values) / 1000 for name, values in samples.items()}
    return {
        **{f"{name}_us": median for name, median in medians.items()},
        "decorated_minus_bare_us": medians["traced"] - medians["bare"],
        "decorator_us": medians["traced"] - medians["span"],
    }


def throughput(client) -> dict:
    """Events per second from one agent thread to rows in the server's database."""
    from runs.models import RunEvent

    before = RunEvent.objects.count()
    started = time.perf_counter()
    for _ in range(THROUGHPUT_EVENTS // EVENTS_PER_RUN):
        run_id = client.start_run("agent-bench", "throughput")
        for step in range(EVENTS_PER_RUN):
            client.log_event(run_id, "step", {"n": step})
        client.end_run(run_id)
    recorded = time.perf_counter() - started
    delivered_all = client.flush(timeout=300)
    elapsed = time.perf_counter() - started
    stored = RunEvent.objects.count() - before
    return {
        "recorded_s": recorded,
        "delivered_s": elapsed,
        "events_stored": stored,
        "delivered_all": delivered_all,
        "events_per_s": stored / elapsed,
    }


def run(db: str) -> dict:
    from bench.ingest import agent_headers

    with environment(db) as env:
        key = agent_headers()["Authorization"].split()[1]
        with asgi_server(env, workers=2) as base, tempfile.TemporaryDirectory() as spool:
            up = _client(base, key, Path(spool))
            costs_up = {**call_costs(up), "log_event in a coroutine": coroutine_costs(up)}
            decorator = decorator_overhead(up)
            up.flush(timeout=120)
            sustained = throughput(up)
            up.close()
        with tempfile.TemporaryDirectory() as spool:
            down = _client(f"http://127.0.0.1:{free_port()}", key, Path(spool))
            costs_down = call_costs(down)
            down.close(timeout=0.1)
    return {
        "database": db,
        "server_up": costs_up,
        "server_down": costs_down,
        "decorator": decorator,
        "throughput": sustained,
    }


def report(result: dict) -> str:
    lines = [f"SDK cost in the agent's thread, and one agent's delivery, on {result['database']}"]
    for state in ("server_up", "server_down"):
        for call, figures in result[state].items():
            lines.append(f"  {state:11} {call:24} median {figures['median_us']:7.1f} us   p99 {figures['p99_us']:7.1f} us")
    lines.append("  targets: log_event median <= 20 us, p99 <= 200 us; start_run median <= 100 us")
    d = result["decorator"]
    lines.append(
        f"  decorator overhead: @traced no-op {d['traced_us']:.2f} us - bare no-op {d['bare_us']:.2f} us = "
        f"{d['decorated_minus_bare_us']:.2f} us: the span it records (with tracer.span(): {d['span_us']:.2f} us) "
        f"+ the decorator {d['decorator_us']:.2f} us (target <= 5 us)"
    )
    t = result["throughput"]
    lines.append(
        f"  one agent process: {t['events_stored']} events recorded in {t['recorded_s']:.2f} s, all stored after "
        f"{t['delivered_s']:.2f} s = {t['events_per_s']:,.0f} events/s delivered (target >= 10,000)"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    from bench.results import main

    main("sdk", run, report)
