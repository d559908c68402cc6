"""What every benchmark needs: real services in a temporary folder and a bounded HTTP load
generator (the server itself starts with tests.services.asgi_server). Loopback only."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import redis.asyncio

from operations.embedded_redis import EmbeddedRedis
from tests.services import ROOT, ThrowawayPostgres, asgi_server, postgres_bin_dir, production_env


@contextmanager
def environment(db: str):
    """Redis and a database of kind `db` (sqlite|postgres) in a temporary folder; yields the env."""
    workdir = Path(tempfile.mkdtemp(prefix="telemetry-bench-"))
    redis = EmbeddedRedis(workdir / "redis").start()
    postgres = None
    env = production_env(
        DJANGO_SETTINGS_MODULE="bench.settings",
        REDIS_URL=redis.url,
        TELEMETRY_VAR_DIR=str(workdir / "var"),
        DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}",
        # The benches load the server through one key on purpose (a thousand held waits, approval
        # requests by the second): the bounds per key (core.quotas) would refuse them.
        HELD_WAITS_PER_KEY="0",
        APPROVAL_REQUESTS_PER_MINUTE="0",
    )
    del env["WEB_MAX_LOOP_LAG_MS"]  # the tests' setting: benchmarks run with the production default
    try:
        if db == "postgres":
            postgres = ThrowawayPostgres(postgres_bin_dir()).start()
            env["DATABASE_URL"] = postgres.url
        os.environ.update(env)
        for command in (["migrate"], ["collectstatic", "--noinput"]):  # static files: the admin's login page
            subprocess.run([sys.executable, "manage.py", *command, "-v0"], cwd=ROOT, env=env, check=True)
        import django

        django.setup()
        yield env
    finally:
        if postgres:
            postgres.stop()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def servers(env: dict, count: int):
    """`count` uvicorn servers of one worker each; yields their URLs, for a Load to spread its
    connections over evenly. Rather than one server with `--workers`: its workers share one
    listening socket, the kernel picks which accepts, and `ss` showed all four of a bench's
    connections held by one of two workers (rounds fell in two modes, 3,300 and 5,600 rows/s)."""
    with ExitStack() as stack:
        yield [stack.enter_context(asgi_server(env)) for _ in range(count)]


class Load:
    """Sends prepared POSTs (or another `method`) over `concurrency` keep-alive connections until they run out or
    `seconds` pass. `path` is one path for every body, or a list of paths, one per body. `base`
    is one server's URL, or several, the connections spread evenly across them.

    A bare HTTP/1.1 client rather than httpx: on these two cores httpx tops out near 800 requests
    a second, fewer with more connections, which would measure the client instead of the server
    (a bare ASGI app answers this client ~20,000 times a second)."""

    def __init__(self, base: str | list[str], headers: dict, concurrency: int, seconds: float, method: str = "POST"):
        self.bases = [base] if isinstance(base, str) else base
        self.headers, self.concurrency, self.seconds, self.method = headers, concurrency, seconds, method

    def run(self, path: str | list[str], bodies: list[bytes], expect: set[int]) -> dict:
        return asyncio.run(self._run(path, bodies, expect))

    async def _run(self, path: str | list[str], bodies: list[bytes], expect: set[int]) -> dict:
        queue = zip([path] * len(bodies) if isinstance(path, str) else path, bodies, strict=True)
        latencies: list[float] = []
        failures: list[int] = []
        statuses: Counter[int] = Counter()
        start = time.perf_counter()
        deadline = start + self.seconds

        async def worker(base: str):
            async with Connection(base, self.headers) as connection:
                for url, body in queue:
                    if time.perf_counter() > deadline:
                        return
                    sent = time.perf_counter()
                    status, _, _ = await connection.request(self.method, url, body)
                    latencies.append(time.perf_counter() - sent)
                    statuses[status] += 1
                    if status not in expect:
                        failures.append(status)

        await asyncio.gather(*(worker(self.bases[n % len(self.bases)]) for n in range(self.concurrency)))
        elapsed = time.perf_counter() - start
        if failures:
            raise RuntimeError(f"{len(failures)} unexpected answers, e.g. {failures[:5]}")
        answered = {"requests": len(latencies), "seconds": elapsed, "per_second": len(latencies) / elapsed}
        return {**answered, "statuses": dict(statuses), **percentiles(latencies)}


class Connection:
    """One HTTP/1.1 keep-alive connection that sends requests and reads each whole answer
    (Content-Length or chunked)."""

    def __init__(self, base: str, headers: dict):
        self.url = httpx.URL(base)
        self.head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())

    async def __aenter__(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection(self.url.host, self.url.port)
        self.writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self

    async def __aexit__(self, *exc) -> None:
        self.writer.close()

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """(status, body) of a POST."""
        status, _, answer = await self.request("POST", path, body)
        return status, answer

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lowercase names, body) of one request."""
        self.writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: {self.url.host}\r\n{self.head}Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
        status_line, *lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines if line)}
        if "content-length" in headers:
            return status, headers, await self.reader.readexactly(int(headers["content-length"]))
        chunks = []
        while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
            chunks.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)
        await self.reader.readexactly(2)
        return status, headers, b"".join(chunks)


# Wake-ups: a waiter blocks, something wakes it; how long from the wake-up sent to the waiter back.
HOLD = 0.03  # seconds a wait is held before the wake-up is sent
LATENCY_SAMPLES = 300
WARMUP = 10


def tally(statuses: list) -> dict[str, int]:
    """How many of each status (an HTTP code or an error's name), for the report."""
    return {str(status): statuses.count(status) for status in set(statuses)}


def busy_vs_quiet(busy: dict, quiet: dict) -> dict[str, float]:
    """Each probe's p50 while the crowd waits, as a ratio to its p50 with nobody waiting."""
    return {name: busy[name]["p50_ms"] / quiet[name]["p50_ms"] for name in quiet}


def pooled(*probes: dict[str, list[float]]) -> dict[str, dict]:
    """The figures of several probes' latencies taken together (see `probe`). Quiet probes are
    taken before and after the busy ones: the machine's speed drifts by up to a third between
    minutes, and pooling both sides keeps that drift off the busy/quiet ratio (measured before
    only, it ranged 76-134% for one code)."""
    return {name: percentiles([latency for latencies in probes for latency in latencies[name]]) for name in probes[0]}


def percentiles(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    return {
        "n": len(ordered),
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[max(int(len(ordered) * 0.99) - 1, 0)] * 1000,
        "max_ms": ordered[-1] * 1000,
    }


async def sequential_wakeups(block, wake, ready=None) -> list[float]:
    """`block()` held HOLD s, then `wake(ready())`: seconds from the wake-up sent to `block()`
    returned, over LATENCY_SAMPLES samples. `ready()` (untimed) learns what to wake, e.g. the
    request the waiter made. When `wake()` returns something, `block()` must return the same."""
    latencies = []
    for sample in range(WARMUP + LATENCY_SAMPLES):

        async def wait():
            found = await block()
            return time.perf_counter(), found

        waiter = asyncio.create_task(wait())
        await asyncio.sleep(HOLD)
        token = await ready() if ready else None
        sent = time.perf_counter()
        expected = await wake(token)
        returned, found = await asyncio.wait_for(waiter, 15)
        if expected is not None and found != expected:
            raise RuntimeError(f"the waiter got {found!r}, not {expected!r}")
        if sample >= WARMUP:
            latencies.append(returned - sent)
    return latencies


def threaded_wakeups(block, wake, ready=None) -> list[float]:
    """sequential_wakeups for blocking calls (the SDK's): `block()` runs in a thread."""

    async def in_thread(function):
        return await asyncio.to_thread(function) if function else None

    return asyncio.run(
        sequential_wakeups(
            lambda: in_thread(block), lambda token: asyncio.to_thread(wake, token), ready and (lambda: in_thread(ready))
        )
    )


async def raw_redis(url: str) -> dict:
    """The same measure of Redis itself: BLPOP woken by LPUSH, XREAD BLOCK woken by XADD."""
    waiter, waker = redis.asyncio.Redis.from_url(url), redis.asyncio.Redis.from_url(url)

    async def lpush(_):
        await waker.lpush("bench:list", "x")

    async def xadd(_):
        await waker.xadd("bench:stream", {"x": "1"})

    try:
        blpop = await sequential_wakeups(lambda: waiter.blpop(["bench:list"], timeout=10), lpush)
        xread = await sequential_wakeups(lambda: waiter.xread({"bench:stream": "$"}, block=10_000), xadd)
    finally:
        await waiter.aclose()
        await waker.aclose()
    return {"blpop": percentiles(blpop), "xread": percentiles(xread)}


async def lone_post(base: str, path: str, headers: dict, body: dict) -> tuple[int, dict | None]:
    """POST on a connection of its own, read to its end: (status, JSON body). For a thousand
    waits at once, where httpx's pool spends O(connections) on every response (seconds)."""
    url = httpx.URL(base)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    data = json.dumps(body).encode()
    head = "".join(f"{name}: {value}\r\n" for name, value in {**headers, "Content-Length": len(data)}.items())
    writer.write(f"POST {path} HTTP/1.1\r\nHost: {url.host}\r\nConnection: close\r\n{head}\r\n".encode() + data)
    response = await reader.read()
    writer.close()
    status, _, rest = response.partition(b"\r\n")
    return int(status.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2] or b"null")


async def probe(kinds: dict, samples: int) -> dict[str, list[float]]:
    """`samples` sequential requests of each kind ({name: () -> awaitable response}); their
    latencies by kind, in seconds (figures: `pooled`)."""
    found = {}
    for name, request in kinds.items():
        latencies = found[name] = []
        for _ in range(samples):
            sent = time.perf_counter()
            response = await request()
            latencies.append(time.perf_counter() - sent)
            if response.status_code != 200:
                raise RuntimeError(f"{name}: {response.status_code} {response.text[:200]}")
    return found
