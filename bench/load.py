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

python -m bench.load --db sqlite|postgres [--seconds 60] [--report-every 10] [--scale 1] [--soak]

`--seconds 1800` is the soak. A failed check exits 1; a soak trend only with --soak or from
SOAK_SECONDS on (a minute-long run has not warmed up).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import time
from array import array
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import psutil
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from bench.approvals import reviewer_headers
from bench.harness import HOLD, Connection, Load, environment, percentiles
from bench.ingest import agent_headers
from bench.results import save
from tests.services import ROOT, asgi_server, celery_processes

WORKERS = 2
AGENTS = 1000
BEAT_INTERVAL = 10.0  # seconds between an agent's beats: AGENTS / BEAT_INTERVAL beats/s
SIGNAL_WAITERS = 20
SIGNAL_RATE = 5.0
APPROVAL_RATE = 1.0
APPROVAL_HOLD = 0.2  # seconds the reviewer takes
READS = {"GET /api/v1/runs?limit=20": 1.0, "GET /api/v1/agents/active": 0.5}  # requests/s
SDK_AGENTS = 2
SDK_RUN_RATE = 2.0  # runs/s per agent process
SDK_EVENTS = 20
WATCHERS = 50
WATCHER_LIFETIME = 60.0
TIMED_WATCHERS = 10  # of the WATCHERS, those whose every event is timed (all are counted)
WAIT_TIMEOUT = 30  # seconds a held wait asks for
GRACE = 5.0  # seconds for the last signals to arrive once the sending stops
CONNECTIONS = 1000  # most keep-alive connections open at once: beyond WORKERS x WEB_MAX_IN_FLIGHT
IDLE = 4.0  # seconds an idle connection is reused; uvicorn closes them after 5
MAX_OUTSTANDING = 2000  # requests of one stream not answered yet; a due one beyond is not sent
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
HELD = {"POST /api/v1/signals/receive", "POST /api/v1/approvals/{id}/wait"}
# Soak: medians of the samples in the window after warm-up and in the last one; flat when the
# last exceeds the first by at most max(absolute, relative x first).
WARMUP, WINDOW, SOAK_SECONDS = 0.2, 0.1, 600
MB = 1024 * 1024
SERVER_GROUPS = ["uvicorn master", "uvicorn workers", "celery worker", "celery pool", "celery beat", "redis", "postgres"]
# The process groups in the sample lines, with their headings (others are in the JSON only).
GROUPS = {
    "uvicorn master": "uv.master",
    "uvicorn workers": "uv.workers",
    "celery worker": "cel.worker",
    "celery pool": "cel.pool",
    "celery beat": "cel.beat",
    "redis": "redis",
    "postgres": "postgres",
    "sdk agents": "sdk agents",
    "load generator": "generator",
}
STREAM_NODE_ENTRIES = 100  # Redis's stream-node-max-entries: an approximate MAXLEN trims whole nodes
FLAT = {"memory": (20.0, 0.10), "redis keys": (5, 0.01), "db connections": (5, 0.10), "channel-layer channels": (5, 0.10)}


class Pool:
    """Keep-alive connections with one set of headers, opened on demand up to `size`; a request
    that finds none free waits for one. A connection that failed or idled IDLE s is dropped."""

    def __init__(self, base: str, headers: dict, size: int):
        self.base, self.headers = base, headers
        self.free = asyncio.Semaphore(size)
        self.idle: list[tuple[Connection, float]] = []

    @contextlib.asynccontextmanager
    async def connection(self):
        async with self.free:
            connection = None
            while self.idle and connection is None:
                candidate, since = self.idle.pop()
                if time.perf_counter() - since < IDLE:
                    connection = candidate
                else:
                    await candidate.__aexit__()
            connection = connection or await Connection(self.base, self.headers).__aenter__()
            try:
                yield connection
            except BaseException:
                await connection.__aexit__()
                raise
            self.idle.append((connection, time.perf_counter()))

    async def close(self) -> None:
        for connection, _ in self.idle:
            await connection.__aexit__()
        self.idle.clear()


class Recorder:
    """Per endpoint: the latency of each answer (s, from when it was due; none for held waits)
    and each status (an HTTP code or an error's name); wake-up latencies; event counts."""

    def __init__(self):
        self.latencies: dict[str, array] = defaultdict(lambda: array("d"))
        self.statuses: dict[str, Counter] = defaultdict(Counter)
        self.wakeups: dict[str, array] = defaultdict(lambda: array("d"))
        self.counts: Counter = Counter()
        self.answered = self.refused = 0  # since the last sample

    def answer(self, name: str, status: int | str, latency: float | None, headers: dict) -> None:
        self.statuses[name][status] += 1
        if latency is not None:
            self.latencies[name].append(latency)
        self.answered += 1
        if status == 429:
            self.refused += 1
            self.counts["429 without Retry-After"] += "retry-after" not in headers

    def endpoints(self, seconds: float) -> dict:
        return {
            name: {
                "requests": sum(statuses.values()),
                "per_second": sum(statuses.values()) / seconds,
                "held": name in HELD,
                **(percentiles(self.latencies[name]) if self.latencies[name] else {}),
                "statuses": {str(status): n for status, n in statuses.items()},
            }
            for name, statuses in self.statuses.items()
        }


class Probe:
    """What the server's processes, Redis and the database hold. Runs in one thread of its own
    (`self.thread`), so that the database is asked over one connection the count leaves out."""

    def __init__(self, env: dict, db: str):
        self.db = db
        self.sqlite_path = env["DATABASE_URL"].removeprefix("sqlite:///") if db == "sqlite" else None
        self.redis = redis.Redis.from_url(env["REDIS_URL"])
        self.thread = ThreadPoolExecutor(max_workers=1)
        self.me = psutil.Process()
        self.me.cpu_percent()
        self.thread.submit(psutil.cpu_percent).result()  # its first call (per thread) starts the count

    async def ask(self, function):
        return await asyncio.get_running_loop().run_in_executor(self.thread, function)

    def processes(self) -> list[dict]:
        """Every process of this benchmark (this one and its descendants), labelled."""
        found = []
        for process in [self.me, *self.me.children(recursive=True)]:
            try:
                name = label(process, self.me)
                memory = process.memory_full_info().uss if name == "postgres" else process.memory_info().rss
                found.append({"label": name, "pid": process.pid, "mb": memory / MB})
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass  # gone meanwhile (a backend, a pool child), or not ours to read
        return found

    def sample(self) -> dict:
        processes = self.processes()
        groups = defaultdict(float)
        for process in processes:
            groups[process["label"]] += process["mb"]
        return {
            "mb": dict(groups),
            "redis keys": self.redis.dbsize(),
            "stream entries": sum(self.streams().values()),
            "db connections": self.db_connections(processes),
            "channel groups": len(self.redis.pubsub_channels("asgi__group__*")),
            "channel-layer channels": len(self.redis.pubsub_channels("asgi*")),
            "generator cpu %": self.me.cpu_percent(),
            "machine cpu %": psutil.cpu_percent() * psutil.cpu_count(),
        }

    def streams(self) -> dict[str, int]:
        """Entries in each event type's stream (each capped at about EVENT_STREAM_MAXLEN)."""
        from core.streams import STREAM_PREFIX

        keys = list(self.redis.scan_iter(match=f"{STREAM_PREFIX}*", _type="STREAM"))
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.xlen(key)
        return {key.decode().removeprefix(STREAM_PREFIX): length for key, length in zip(keys, pipe.execute(), strict=True)}

    def db_connections(self, processes: list[dict]) -> int:
        if self.db == "postgres":
            from django.db import connection

            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
                )
                return cursor.fetchone()[0]
        handles = 0
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                handles += sum(f.path == self.sqlite_path for f in psutil.Process(process["pid"]).open_files())
        return handles

    def close(self) -> None:
        from django.db import connection

        self.thread.submit(lambda: connection.close()).result()  # the thread's own connection
        self.thread.shutdown()
        self.redis.close()


def label(process: psutil.Process, me: psutil.Process) -> str:
    """The process group of `process`, by its command line and its parent's."""
    if process.pid == me.pid:
        return "load generator"
    command, parent = " ".join(process.cmdline()), process.parent()
    parent_command = " ".join(parent.cmdline()) if parent else ""
    if process.name() == "redis-server":
        return "redis"
    if process.name() == "postgres" or command.startswith("postgres"):
        return "postgres"
    if "-m uvicorn" in command:
        return "uvicorn master"
    if "resource_tracker" in command:
        return "multiprocessing resource tracker"
    if "-m uvicorn" in parent_command:
        return "uvicorn workers"
    if "celery" in command and " worker" in command:
        return "celery pool" if "celery" in parent_command and " worker" in parent_command else "celery worker"
    if "celery" in command and " beat" in command:
        return "celery beat"
    if "bench.load_agent" in command:
        return "sdk agents"
    return process.name()


class Mix:
    """The streams of the mix, their state, and the samples taken while they run."""

    def __init__(self, base: str, agent: dict, reviewer: dict, probe: Probe, scale: float):
        self.base, self.agent_key, self.probe, self.scale = base, agent["Authorization"], probe, scale
        self.agents = Pool(base, agent, CONNECTIONS)
        self.reviewer = Pool(base, reviewer, 50)
        self.recorder = Recorder()
        self.counts = self.recorder.counts
        self.waiting: dict[str, float] = {}  # signal waiter -> since when its wait is out
        self.signals_sent: dict[int, float] = {}  # signal token -> when sent, until delivered
        self.watching = 0
        self.samples: list[dict] = []

    async def call(self, pool: Pool, name: str, method: str, path: str, body=None, due: float | None = None):
        """(status or error name, answer body) of one request, recorded under `name`."""
        due = due or time.perf_counter()
        try:
            async with pool.connection() as connection:
                if time.perf_counter() > self.until + GRACE:  # it waited for a connection past the end
                    self.counts["not sent: the run was over when a connection was free"] += 1
                    return "not sent", b""
                status, headers, answer = await connection.request(method, path, json.dumps(body).encode() if body else b"")
        except (OSError, EOFError) as exc:
            self.recorder.answer(name, type(exc).__name__, None, {})
            return type(exc).__name__, b""
        self.recorder.answer(name, status, None if name in HELD else time.perf_counter() - due, headers)
        return status, answer

    async def stream(self, name: str, rate: float, action) -> None:
        """`action(n, due)` as a task every 1 / (rate x scale) s until the end, whether or not the
        earlier ones are done (at most MAX_OUTSTANDING of them); then waits for them."""
        interval, outstanding = 1 / (rate * self.scale), set()
        due, n = time.perf_counter(), 0
        while due < self.until:
            await asyncio.sleep(due - time.perf_counter())
            if len(outstanding) < MAX_OUTSTANDING:
                task = asyncio.create_task(action(n, due))
                outstanding.add(task)
                task.add_done_callback(outstanding.discard)
            else:
                self.counts[f"not sent: {MAX_OUTSTANDING} {name} outstanding"] += 1
            due, n = due + interval, n + 1
        if outstanding:
            await asyncio.wait(outstanding)

    async def beat(self, n: int, due: float) -> None:
        body = {"status": "running", "progress": n // AGENTS % 100 / 100, "current_task": f"step {n // AGENTS}"}
        await self.call(
            self.agents, "POST /api/v1/agents/{id}/heartbeat", "POST", f"/api/v1/agents/agent-{n % AGENTS}/heartbeat", body, due
        )

    async def wait_for_signals(self, agent: str) -> None:
        while time.perf_counter() < self.until + GRACE:
            self.waiting[agent] = time.perf_counter()
            body = {"agent_id": agent, "signal_type": "task", "timeout": WAIT_TIMEOUT}
            status, answer = await self.call(self.agents, "POST /api/v1/signals/receive", "POST", "/api/v1/signals/receive", body)
            returned = time.perf_counter()
            self.waiting.pop(agent, None)
            signal = json.loads(answer)["signal"] if status == 200 else None
            if signal and (sent := self.signals_sent.pop(signal["payload"]["token"], None)):
                self.recorder.wakeups["signal sent -> waiter back"].append(returned - sent)
                self.counts["signals delivered"] += 1
            elif status != 200:
                await asyncio.sleep(1)  # refused or broken: try again, not at once

    async def signal(self, n: int, due: float) -> None:
        """A signal to an agent whose wait has been out HOLD s (so it is held), one per wait."""
        ready = [agent for agent, since in self.waiting.items() if due - since > HOLD]
        if not ready:
            self.counts["no signal due: no agent was waiting"] += 1
            return
        target = ready[n % len(ready)]
        del self.waiting[target]
        self.signals_sent[n] = time.perf_counter()
        body = {"signal_type": "task", "target_agent": target, "source_agent": "agent-999", "payload": {"token": n}}
        status, _ = await self.call(self.agents, "POST /api/v1/signals", "POST", "/api/v1/signals", body, due)
        if status == 201:
            self.counts["signals sent"] += 1
        else:
            self.signals_sent.pop(n, None)

    async def approval(self, n: int, due: float) -> None:
        body = {"approval_type": "deploy", "agent_id": f"agent-{n % AGENTS}", "context": {"n": n}, "timeout_seconds": 600}
        status, answer = await self.call(self.agents, "POST /api/v1/approvals", "POST", "/api/v1/approvals", body, due)
        if status != 201:
            return
        request_id = json.loads(answer)["request_id"]

        async def wait():
            path = f"/api/v1/approvals/{request_id}/wait"
            status, answer = await self.call(
                self.agents, "POST /api/v1/approvals/{id}/wait", "POST", path, {"timeout": WAIT_TIMEOUT}
            )
            return time.perf_counter(), status == 200 and json.loads(answer)["status"] == "approved"

        waiter = asyncio.create_task(wait())
        await asyncio.sleep(APPROVAL_HOLD)
        decided = time.perf_counter()
        path = f"/api/v1/approvals/{request_id}/decide"
        status, _ = await self.call(
            self.reviewer, "POST /api/v1/approvals/{id}/decide", "POST", path, {"approved": True, "reason": "load"}
        )
        if status != 200:
            waiter.cancel()  # nobody decided: the agent stops waiting
            return
        self.counts["approvals decided"] += 1
        returned, approved = await waiter
        if approved:
            self.recorder.wakeups["decision sent -> waiter back"].append(returned - decided)
            self.counts["approvals delivered"] += 1

    def read(self, name: str):
        method, path = name.split()

        async def action(n: int, due: float) -> None:
            await self.call(self.agents, name, method, path, None, due)

        return action

    async def watch(self, index: int) -> None:
        """A websocket client of the live feed; reconnects every WATCHER_LIFETIME s, the first
        time staggered so that the watchers do not all reconnect at once."""
        lifetime = WATCHER_LIFETIME * (index + 1) / WATCHERS
        while (left := self.until + GRACE - time.perf_counter()) > 0:  # cancelled after the grace
            try:
                url = f"{self.base.replace('http', 'ws', 1)}/ws/live/"
                async with connect(url, additional_headers={"Authorization": self.agent_key}, max_size=None) as socket:
                    self.counts["websocket connections opened"] += 1
                    self.watching += 1
                    try:
                        async with asyncio.timeout(min(lifetime, left)):
                            async for message in socket:
                                self.received(message, timed=index < TIMED_WATCHERS)
                        self.counts["websocket closed by the server"] += 1
                        await asyncio.sleep(1)
                    except TimeoutError:
                        pass  # time to reconnect
                    finally:
                        self.watching -= 1
            except (OSError, WebSocketException) as exc:
                self.counts[f"websocket {type(exc).__name__}"] += 1
                await asyncio.sleep(1)
            lifetime = WATCHER_LIFETIME

    def received(self, message: str, timed: bool) -> None:
        """Counts the events of a feed message; when `timed`, times each from its XADD (the
        millisecond of its stream id, Redis's clock: this machine's)."""
        now_ms = time.time() * 1000
        events = json.loads(message).get("events", ())
        self.counts["websocket events received"] += len(events)
        if timed:
            latencies = self.recorder.wakeups["XADD -> websocket watcher has it"]
            for event in events:
                latencies.append((now_ms - int(event["event_id"].partition("-")[0])) / 1000)

    async def sample_every(self, every: float, started: float, seconds: float) -> None:
        for k in range(1, int(seconds // every) + 1):
            await asyncio.sleep(started + k * every - time.perf_counter())
            sample = {"t": round(time.perf_counter() - started, 1), **await self.probe.ask(self.probe.sample)}
            sample["req/s"], sample["429/s"] = self.recorder.answered / every, self.recorder.refused / every
            sample["watchers connected"] = self.watching
            self.recorder.answered = self.recorder.refused = 0
            if not self.samples:
                print(f"every {every:g} s (memory in MB: RSS, PostgreSQL USS; cpu%: 100 = one core)", flush=True)
                print(sample_header(sample), flush=True)
            self.samples.append(sample)
            print(sample_line(sample), flush=True)

    async def run(self, seconds: float, every: float) -> dict:
        started = time.perf_counter()
        self.until = started + seconds
        processes_at_start = await self.probe.ask(self.probe.processes)
        background = [asyncio.create_task(self.wait_for_signals(f"agent-{i}")) for i in range(SIGNAL_WAITERS)]
        background += [asyncio.create_task(self.watch(i)) for i in range(WATCHERS)]
        sampler = asyncio.create_task(self.sample_every(every, started, seconds))
        await asyncio.gather(
            self.stream("heartbeats", AGENTS / BEAT_INTERVAL, self.beat),
            self.stream("signals", SIGNAL_RATE, self.signal),
            self.stream("approvals", APPROVAL_RATE, self.approval),
            *(self.stream(name, rate, self.read(name)) for name, rate in READS.items()),
        )
        elapsed = time.perf_counter() - started
        await sampler
        processes_at_end = await self.probe.ask(self.probe.processes)
        streams_at_end = await self.probe.ask(self.probe.streams)
        deadline = time.perf_counter() + GRACE
        while self.signals_sent and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await self.agents.close()
        await self.reviewer.close()
        return {
            "seconds": elapsed,
            "endpoints": self.recorder.endpoints(elapsed),
            "wakeups": {name: percentiles(values) for name, values in self.recorder.wakeups.items() if values},
            "counts": dict(self.counts),
            "processes": {"start": processes_at_start, "end": processes_at_end},
            "streams": streams_at_end,
            "samples": self.samples,
        }


def sample_columns(sample: dict) -> list[tuple[str, str]]:
    """(heading, value) of each column of a sample line; memory in MB."""
    memory = [(short, f"{sample['mb'][name]:.0f}") for name, short in GROUPS.items() if name in sample["mb"]]
    return [
        ("t s", f"{sample['t']:.0f}"),
        ("req/s", f"{sample['req/s']:.0f}"),
        ("429/s", f"{sample['429/s']:.1f}"),
        *memory,
        ("redis keys", str(sample["redis keys"])),
        ("stream ent.", str(sample["stream entries"])),
        ("db conns", str(sample["db connections"])),
        ("ch.groups", str(sample["channel groups"])),
        ("ch.channels", str(sample["channel-layer channels"])),
        ("watchers", str(sample["watchers connected"])),
        ("gen cpu%", f"{sample['generator cpu %']:.0f}"),
        ("cpu%", f"{sample['machine cpu %']:.0f}"),
    ]


def sample_header(sample: dict) -> str:
    return " ".join(f"{heading:>11}" for heading, _ in sample_columns(sample))


def sample_line(sample: dict) -> str:
    return " ".join(f"{value:>11}" for _, value in sample_columns(sample))


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


def soak_verdict(samples: list[dict], seconds: float, every: float) -> dict:
    window = max(every, WINDOW * seconds)
    first = [s for s in samples if WARMUP * seconds < s["t"] <= WARMUP * seconds + window]
    last = [s for s in samples if s["t"] > seconds - window]
    items = []
    if not first or not last:
        return {"first": None, "last": None, "items": items}

    def compare(name: str, kind: str, value) -> None:
        before, after = statistics.median(map(value, first)), statistics.median(map(value, last))
        absolute, relative = FLAT[kind]
        allowed = max(absolute, relative * before)
        items.append({"name": name, "first": before, "last": after, "allowed": allowed, "flat": after - before <= allowed})

    for group in SERVER_GROUPS:
        if group in last[0]["mb"]:
            compare(f"memory MB {group}", "memory", lambda s, group=group: s["mb"].get(group, 0.0))
    compare("redis keys", "redis keys", lambda s: s["redis keys"])
    compare("db connections", "db connections", lambda s: s["db connections"])
    compare("channel-layer channels", "channel-layer channels", lambda s: s["channel-layer channels"])
    return {"first": [first[0]["t"], first[-1]["t"]], "last": [last[0]["t"], last[-1]["t"]], "items": items}


def checks(result: dict) -> list[dict]:
    from django.conf import settings

    endpoints, counts, sdk = result["endpoints"], result["counts"], result["sdk"]
    statuses = Counter()
    for figures in endpoints.values():
        statuses.update(figures["statuses"])
    broken = {status: n for status, n in statuses.items() if not status.isdigit() or status.startswith("5")}
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
            "name": "the websocket watchers received the feed",
            "ok": counts.get("websocket events received", 0) > 0,
            "figures": {"events received": counts.get("websocket events received", 0)},
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
            start = {"display_name": "load", "metadata": {"bench": "load"}}
            paths = [f"/api/v1/agents/agent-{i}/heartbeat/start" for i in range(AGENTS)]
            agents_started = Load(base, agent, START_CONCURRENCY, 60).run(paths, [json.dumps(start).encode()] * AGENTS, {200})
            from django.db import connections

            connections.close_all()  # the database connections counted are the server's
            probe = Probe(env, db)
            agents = [sdk_agent(base, key, index, scale, seconds) for index in range(SDK_AGENTS)]
            try:
                result = asyncio.run(Mix(base, agent, reviewer, probe, scale).run(seconds, every))
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


def memory_lines(processes: dict) -> list[str]:
    """Each process's memory at start and end; PostgreSQL's processes (backends come and go) as one."""

    def rows(found: list[dict]) -> dict:
        by_process = defaultdict(float)
        for process in found:
            by_process[(process["label"], "all" if process["label"] == "postgres" else process["pid"])] += process["mb"]
        return by_process

    start, end = rows(processes["start"]), rows(processes["end"])
    lines = [f"  memory, MB (RSS; PostgreSQL USS)   {'pid':>8} {'start':>9} {'end':>9}"]
    for name, pid in sorted(start.keys() | end.keys(), key=str):
        before = f"{start[name, pid]:9.1f}" if (name, pid) in start else f"{'-':>9}"
        after = f"{end[name, pid]:9.1f}" if (name, pid) in end else f"{'-':>9}"
        lines.append(f"    {name:32} {pid:>8} {before} {after}")
    return lines


def soak_lines(soak: dict) -> list[str]:
    if not soak["items"]:
        return ["  soak: too few samples for a verdict"]
    lines = [
        f"  soak: medians of the samples {soak['first'][0]:.0f}-{soak['first'][1]:.0f} s (after warm-up) against "
        f"{soak['last'][0]:.0f}-{soak['last'][1]:.0f} s (the last)"
        + ("" if soak["decides"] else f"; informative (only --soak or {SOAK_SECONDS} s and more fail the run on it)")
    ]
    for item in soak["items"]:
        lines.append(
            f"    {'flat   ' if item['flat'] else 'GROWING'}  {item['name']:34} {item['first']:9.1f} -> {item['last']:9.1f}  "
            f"({item['last'] - item['first']:+.1f}, allowed +{item['allowed']:.1f})"
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
