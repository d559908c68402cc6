"""bench.load's traffic: the streams of the mix at their offered rates, over keep-alive
connections (Pool), each answer recorded (Recorder); the rates are at --scale 1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from array import array
from collections import Counter, defaultdict

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from bench.harness import HOLD, Connection, percentiles
from bench.load_probe import Probe, sample_header, sample_line

AGENTS = 1000
BEAT_INTERVAL = 10.0  # seconds between an agent's beats: AGENTS / BEAT_INTERVAL beats/s
SIGNAL_WAITERS = 20
SIGNAL_RATE = 5.0
APPROVAL_RATE = 1.0
APPROVAL_HOLD = 0.2  # seconds the reviewer takes
READS = {"GET /api/v1/runs?limit=20": 1.0, "GET /api/v1/agents/active": 0.5}  # requests/s
WATCHERS = 50
WATCHER_LIFETIME = 60.0
TIMED_WATCHERS = 10  # of the WATCHERS, those whose every event is timed (all are counted)
WAIT_TIMEOUT = 30  # seconds a held wait asks for
GRACE = 5.0  # seconds for the last signals to arrive once the sending stops
CONNECTIONS = 1000  # most keep-alive connections open at once: beyond WORKERS x WEB_MAX_IN_FLIGHT
IDLE = 4.0  # seconds an idle connection is reused; uvicorn closes them after 5
MAX_OUTSTANDING = 2000  # requests of one stream not answered yet; a due one beyond is not sent
HELD = {"POST /api/v1/signals/receive", "POST /api/v1/approvals/{id}/wait"}


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


class Mix:
    """The streams of the mix, their state, and the samples taken while they run."""

    def __init__(self, base: str, agent: dict, reviewer: dict, watcher_keys: list[str], probe: Probe, scale: float):
        self.base, self.watcher_keys, self.probe, self.scale = base, watcher_keys, probe, scale
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
        """A websocket client of the live feed, with a key of its own (a key may hold
        WEBSOCKETS_PER_KEY feeds); reconnects every WATCHER_LIFETIME s, the first time staggered
        so that the watchers do not all reconnect at once."""
        lifetime, key = WATCHER_LIFETIME * (index + 1) / WATCHERS, self.watcher_keys[index]
        while (left := self.until + GRACE - time.perf_counter()) > 0:  # cancelled after the grace
            try:
                url = f"{self.base.replace('http', 'ws', 1)}/ws/live/"
                async with connect(url, additional_headers={"Authorization": key}, max_size=None) as socket:
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
                code = f" {exc.rcvd.code}" if isinstance(exc, ConnectionClosed) and exc.rcvd else ""
                self.counts[f"websocket failed: {type(exc).__name__}{code}"] += 1
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
