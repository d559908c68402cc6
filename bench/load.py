"""Load and soak: a realistic mix at fixed offered rates against the server as production runs it
(uvicorn x2, a prefork Celery worker and a beat process), from one asyncio loop over bare
keep-alive connections (harness.Connection), loopback only.

The mix, each stream open loop (a request goes out when it is due, answered or not, so that
overload shows as 429s and latency rather than as a slower generator), at --scale times:
  - AGENTS agents start their heartbeat, then each beats every BEAT_INTERVAL s;
  - SIGNAL_RATE directed signals/s, each to one of SIGNAL_WAITERS agents held in /signals/receive;
  - APPROVAL_RATE approvals/s: the agent asks and waits on /approvals/<id>/wait, APPROVAL_HOLD s
    later a reviewer's session decides through the API (agent keys may not decide);
  - reads (READS): the runs list, the active agents;
  - SDK_AGENTS agent processes (bench/load_agent.py), SDK_RUN_RATE runs/s of SDK_EVENTS events;
  - WATCHERS websocket clients of /ws/live/, each reconnecting every WATCHER_LIFETIME s (so that
    a leak of channel-layer subscriptions would show).

Reported: per endpoint requests, req/s, p50/p99 (from when the request was due) and statuses;
wake-ups (signal sent -> the waiter back; decision sent -> the waiter back; XADD -> a watcher has
the event, to the millisecond of the stream id); the memory of every process at start and end
(RSS; PostgreSQL as the private memory (USS) of all its processes: their RSS counts the shared
buffer cache again in each, and that cache fills as the tables grow, up to shared_buffers); every
--report-every s a sample: RSS per process group, Redis DBSIZE and event stream entries (Redis's
memory grows with them until each type's stream reaches its cap), database connections
(PostgreSQL: client backends in pg_stat_activity; SQLite: handles of the database file held by
the server's processes), channel-layer subscriptions (channels_redis's pub/sub layer keeps no
keys: its groups and consumers are Redis pub/sub channels, `asgi__group__*` and
`asgispecific.*`). Checks: each run the SDK accepted stored once with all its events, each signal
and decision delivered, no 5xx or broken connection, a Retry-After on every 429, every event
stream within its cap. Soak verdict: the window after warm-up (from
WARMUP of the run on) against the last window, each WINDOW of the run long.

The mix (its streams and rates) is in bench/load_mix.py; the samples, the memory and the soak
verdict in bench/load_probe.py.

python -m bench.load --db sqlite|postgres [--seconds 60] [--report-every 10] [--scale 1] [--soak]

`--seconds 1800` is the soak. A failed check exits 1; a soak trend only with --soak or from
SOAK_SECONDS on (a minute-long run has not warmed up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
from collections import Counter

from bench.approvals import reviewer_headers
from bench.harness import Load, environment
from bench.ingest import agent_headers
from bench.load_mix import (
    AGENTS,
    APPROVAL_RATE,
    BEAT_INTERVAL,
    READS,
    SIGNAL_RATE,
    SIGNAL_WAITERS,
    TIMED_WATCHERS,
    WATCHER_LIFETIME,
    WATCHERS,
    Mix,
)
from bench.load_probe import SOAK_SECONDS, Probe, memory_lines, soak_lines, soak_verdict
from bench.results import save
from tests.services import ROOT, asgi_server, celery_processes

WORKERS = 2
SDK_AGENTS = 2
SDK_RUN_RATE = 2.0  # runs/s per agent process
SDK_EVENTS = 20
START_CONCURRENCY = 16
SCOPES = (
    "runs:read",
    "runs:write",
    "coordination:read",
    "coordination:write",
    "approvals:request",
    "approvals:read",
    "streams:read",
)
STREAM_NODE_ENTRIES = 100  # Redis's stream-node-max-entries: an approximate MAXLEN trims whole nodes


def stored_once(agents: list[dict]) -> dict:
    """Whether every run the SDK agents accepted is in the database exactly once, ended, with all
    its events."""
    from django.db.models import Count

    from runs.models import Run

    figures = Counter()
    for agent in agents:
        rows = Run.objects.filter(agent_name=agent["agent"]).annotate(events_stored=Count("events"))
        stored = Counter()
        for run_id, events, status in rows.values_list("run_id", "events_stored", "status"):
            stored[run_id] += 1
            figures["runs with events missing or extra"] += events != agent["events_per_run"]
            figures["runs not ended"] += status != "success"
        figures["runs accepted"] += len(agent["runs"])
        figures["runs stored once"] += sum(stored[run_id] == 1 for run_id in agent["runs"])
        figures["runs stored twice or more"] += sum(n > 1 for n in stored.values())
        figures["runs stored not accepted"] += len(stored.keys() - set(agent["runs"]))
        figures["records dropped or rejected"] += agent["stats"]["dropped"] + agent["stats"]["rejected"]
        figures["records delivered"] += agent["stats"]["delivered"]
        figures["agents not delivered in time"] += not agent["delivered_all"]
    return dict(figures)


def checks(result: dict) -> list[dict]:
    from django.conf import settings

    endpoints, counts, sdk = result["endpoints"], result["counts"], result["sdk"]
    statuses = Counter()
    for figures in endpoints.values():
        statuses.update(figures["statuses"])
    broken = {status: n for status, n in statuses.items() if not status.isdigit() or status.startswith("5")}
    websocket_failures = {name: n for name, n in counts.items() if name.startswith(("websocket failed", "websocket closed"))}
    return [
        {
            "name": "every run the SDK accepted is in the database exactly once, ended, with all its events",
            "ok": sdk["runs accepted"] == sdk["runs stored once"] > 0
            and not sdk["runs stored twice or more"] + sdk["runs stored not accepted"] + sdk["runs with events missing or extra"]
            and not sdk["runs not ended"] + sdk["records dropped or rejected"] + sdk["agents not delivered in time"],
            "figures": sdk,
        },
        {
            "name": "every signal sent was received by its waiting agent",
            "ok": counts.get("signals sent", 0) == counts.get("signals delivered", 0) > 0,
            "figures": {name: counts.get(name, 0) for name in ("signals sent", "signals delivered")},
        },
        {
            "name": "every decision reached the waiting agent",
            "ok": counts.get("approvals decided", 0) == counts.get("approvals delivered", 0) > 0,
            "figures": {name: counts.get(name, 0) for name in ("approvals decided", "approvals delivered")},
        },
        {"name": "no 5xx answers or broken connections", "ok": not broken, "figures": broken},
        {
            "name": "every 429 carried Retry-After",
            "ok": not counts.get("429 without Retry-After"),
            "figures": {"429": statuses.get("429", 0), "without Retry-After": counts.get("429 without Retry-After", 0)},
        },
        {
            "name": "every event stream within its cap (the memory Redis gains as they fill is bounded)",
            "ok": max(result["streams"].values(), default=0) <= settings.EVENT_STREAM_MAXLEN + STREAM_NODE_ENTRIES,
            "figures": {"cap": settings.EVENT_STREAM_MAXLEN, **dict(sorted(result["streams"].items()))},
        },
        {
            "name": "the websocket watchers received the feed, none refused or dropped",
            "ok": counts.get("websocket events received", 0) > 0 and not websocket_failures,
            "figures": {"events received": counts.get("websocket events received", 0), **websocket_failures},
        },
    ]


def sdk_agent(base: str, key: str, index: int, scale: float, seconds: float) -> subprocess.Popen:
    command = ["-m", "bench.load_agent", base, key, f"sdk-{index}", str(SDK_RUN_RATE * scale), str(SDK_EVENTS), str(seconds)]
    return subprocess.Popen([sys.executable, *command], cwd=ROOT, stdout=subprocess.PIPE, text=True)


def run(db: str, seconds: float = 60.0, every: float = 10.0, scale: float = 1.0, soak: bool = False) -> dict:
    """The mix for `seconds`; with `soak`, a growing figure is a failure."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # CONNECTIONS sockets here and in the server
    with environment(db) as env:
        env.update(SESSION_COOKIE_SECURE="false", CSRF_COOKIE_SECURE="false")  # the reviewer's session on plain HTTP
        agent = agent_headers(SCOPES, ("agent-*", "sdk-*"))
        key = agent["Authorization"].split()[1]
        with celery_processes(env), asgi_server(env, WORKERS) as base:
            reviewer = reviewer_headers(base)
            watcher_keys = [agent_headers(("streams:read",), ("agent-*", "sdk-*"))["Authorization"] for _ in range(WATCHERS)]
            start = {"display_name": "load", "metadata": {"bench": "load"}}
            paths = [f"/api/v1/agents/agent-{i}/heartbeat/start" for i in range(AGENTS)]
            agents_started = Load(base, agent, START_CONCURRENCY, 60).run(paths, [json.dumps(start).encode()] * AGENTS, {200})
            from django.db import connections

            connections.close_all()  # the database connections counted are the server's
            probe = Probe(env, db)
            agents = [sdk_agent(base, key, index, scale, seconds) for index in range(SDK_AGENTS)]
            try:
                result = asyncio.run(Mix(base, agent, reviewer, watcher_keys, probe, scale).run(seconds, every))
                outputs = [json.loads(process.communicate(timeout=180)[0]) for process in agents]
            finally:
                for process in agents:
                    if process.poll() is None:
                        process.kill()
                        process.wait()
                probe.close()
            result["sdk"] = stored_once(outputs)
            result["sdk"]["runs/s"] = result["sdk"]["runs accepted"] / seconds
    result.update(database=db, scale=scale, agents_started=agents_started, every=every)
    result["soak"] = {**soak_verdict(result["samples"], seconds, every), "decides": soak}
    result["checks"] = checks(result)
    return result


def report(result: dict) -> str:
    scale = result["scale"]
    offered = (
        f"{AGENTS} agents beating every {BEAT_INTERVAL / scale:g} s, {SIGNAL_RATE * scale:g} signals/s to {SIGNAL_WAITERS} "
        f"waiting agents, {APPROVAL_RATE * scale:g} approvals/s, {sum(READS.values()) * scale:g} reads/s, {SDK_AGENTS} SDK "
        f"agents x {SDK_RUN_RATE * scale:g} runs/s x {SDK_EVENTS} events, {WATCHERS} websocket watchers"
    )
    sdk, counts = result["sdk"], result["counts"]
    return "\n".join(
        [
            f"load on {result['database']} for {result['seconds']:.0f} s (uvicorn x{WORKERS}, Celery worker and beat, "
            f"loopback); offered: {offered}",
            *endpoint_lines(result),
            f"  SDK agents: {sdk['runs accepted']} runs accepted ({sdk['runs/s']:.1f}/s), "
            f"{sdk['records delivered']} records delivered",
            f"  {'wake-up':50} {'n':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}",
            *(
                f"  {name:50} {f['n']:9} {f['p50_ms']:8.1f} {f['p99_ms']:8.1f} {f['max_ms']:8.1f}"
                for name, f in sorted(result["wakeups"].items())
            ),
            f"  websocket: {counts.get('websocket events received', 0) / result['seconds']:.0f} events/s received by "
            f"{WATCHERS} watchers (timed at {TIMED_WATCHERS}); {counts.get('websocket connections opened', 0)} connections "
            f"opened (each watcher reconnects every {WATCHER_LIFETIME:.0f} s)",
            f"  counts: {counts}",
            *memory_lines(result["processes"]),
            *soak_lines(result["soak"]),
            "  checks:",
            *(f"    {'PASS' if check['ok'] else 'FAIL'}  {check['name']}  {check['figures']}" for check in result["checks"]),
        ]
    )


def endpoint_lines(result: dict) -> list[str]:
    header = f"{'requests':>9} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'2xx':>7} {'429':>6} {'5xx':>5} {'other':>6}"
    lines = [f"  {'endpoint (p50/p99 from when the request was due)':50} {header}"]
    answered = ok = 0
    for name, figures in sorted(result["endpoints"].items(), key=lambda item: item[0].split()[::-1]):
        statuses = Counter({int(s) if s.isdigit() else s: n for s, n in figures["statuses"].items()})
        two = sum(n for s, n in statuses.items() if isinstance(s, int) and 200 <= s < 300)
        five = sum(n for s, n in statuses.items() if isinstance(s, int) and s >= 500)
        other = figures["requests"] - two - statuses[429] - five
        timing = (
            f"{'held':>8} {'held':>8}" if figures["held"] else f"{figures.get('p50_ms', 0):8.1f} {figures.get('p99_ms', 0):8.1f}"
        )
        counts = f"{two:7} {statuses[429]:6} {five:5} {other:6}"
        lines.append(f"  {name:50} {figures['requests']:9} {figures['per_second']:7.1f} {timing} {counts}")
        answered, ok = answered + figures["requests"], ok + two
    seconds, skipped = result["seconds"], sum(n for name, n in result["counts"].items() if name.startswith("not sent"))
    lines.append(
        f"  sustained: {answered / seconds:.0f} requests/s answered, {ok / seconds:.0f}/s with 2xx; "
        f"not sent by the generator (backlog over the bounds): {skipped or 'none'}"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the mix runs (1800: the soak)")
    parser.add_argument("--report-every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--scale", type=float, default=1.0, help="every offered rate times this")
    parser.add_argument("--soak", action="store_true", help=f"a soak trend fails the run (always from {SOAK_SECONDS} s on)")
    args = parser.parse_args()
    result = run(args.db, args.seconds, args.report_every, args.scale, args.soak or args.seconds >= SOAK_SECONDS)
    print(report(result), flush=True)
    save("load", result)
    soak_failed = result["soak"]["decides"] and not all(item["flat"] for item in result["soak"]["items"])
    sys.exit(1 if soak_failed or not all(check["ok"] for check in result["checks"]) else 0)


if __name__ == "__main__":
    main()
