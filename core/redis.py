"""Redis connections of a process: the sync pool (shared with the Django cache) and, for async
code, per event loop: two asyncio clients, one for quick commands, whose pool makes a burst wait
for a free connection instead of failing, and one for reads that block (streams consume, the live
feed's reader, the wake-up subscription), which hold their connection while they wait; and one
pipelined connection for the scripts of the hot path (PipelinedRedis)."""

import asyncio
import collections
import hashlib
from collections.abc import Callable
from typing import Any

import hiredis
import redis.asyncio
import redis.exceptions
from django.conf import settings
from django_redis import get_redis_connection
from django_redis.exceptions import ConnectionInterrupted
from redis import Redis
from redis._parsers.base import BaseParser
from redis.asyncio.connection import RedisSSLContext, SSLConnection, parse_url
from redis.exceptions import NoScriptError

# Each by event loop (its connections belong to it).
_async_clients: dict = {}
_blocking_clients: dict = {}
_pipelined: dict = {}
# Seconds a command may wait for Redis's answer (or a connection) before it fails, as the sync
# pool's (settings.CACHES): a Redis that hangs (paused, overloaded) fails requests, with a 503,
# instead of holding them.
SOCKET_TIMEOUT = 5
SOCKET_CONNECT_TIMEOUT = 2
# For the blocking client: longer than any blocking read we issue (streams consume: 30 s; live
# feed: 5 s), which the quick timeout would cut short with a TimeoutError.
ASYNC_SOCKET_TIMEOUT = 60
# Seconds a command waits for a free connection before it fails.
POOL_TIMEOUT = 10
# What a command raises when Redis is down, hangs or is out of reach (django-redis re-raises
# redis-py's own errors, or wraps them).
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ConnectionInterrupted)


def get_redis() -> Redis:
    return get_redis_connection("default")


def get_async_redis() -> redis.asyncio.Redis:
    """For commands that answer at once."""
    return for_event_loop(_async_clients, lambda: _client(settings.REDIS_MAX_CONNECTIONS, SOCKET_TIMEOUT))


def get_async_blocking_redis() -> redis.asyncio.Redis:
    """For commands that wait (XREAD BLOCK, SUBSCRIBE): each holds a connection while it waits."""
    return for_event_loop(_blocking_clients, lambda: _client(settings.REDIS_MAX_BLOCKING_CONNECTIONS, ASYNC_SOCKET_TIMEOUT))


def get_pipelined_redis() -> "PipelinedRedis":
    """For quick commands on the hot path (Script)."""
    return for_event_loop(_pipelined, lambda: PipelinedRedis(settings.REDIS_URL))


def for_event_loop(registry: dict, make: Callable) -> Any:
    """The running event loop's object in `registry` (a client, the wake-ups, the live feed), made
    on its first use there. Keyed by the loop itself, not weakly: these objects hold their loop
    (through their sockets and tasks), so a weak key would never go; a loop that has closed (a
    test's) is dropped when a new one comes."""
    loop = asyncio.get_running_loop()
    found = registry.get(loop)
    if found is None:
        for closed in [other for other in registry if other.is_closed()]:
            del registry[closed]
        found = registry[loop] = make()
    return found


def _client(max_connections: int, socket_timeout: float) -> redis.asyncio.Redis:
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        settings.REDIS_URL,
        max_connections=max_connections,
        timeout=POOL_TIMEOUT,
        socket_timeout=socket_timeout,
        socket_connect_timeout=SOCKET_CONNECT_TIMEOUT,
        health_check_interval=30,
    )
    return redis.asyncio.Redis(connection_pool=pool)


class Script:
    """A Lua script, run on the pipelined connection: EVALSHA by its hash (redis-py's registered
    scripts hash theirs on every call), EVAL when Redis does not have it yet (which loads it)."""

    def __init__(self, source: str):
        self.source = source
        self.sha1 = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, keys: list[str], args: list) -> Any:
        redis = get_pipelined_redis()
        try:
            return await redis.execute("EVALSHA", self.sha1, len(keys), *keys, *args)
        except NoScriptError:
            return await redis.execute("EVAL", self.source, len(keys), *keys, *args)


class PipelinedRedis:
    """One connection to Redis for an event loop's quick commands, pipelined: a command is written
    as soon as it is called, whatever else waits for an answer, and the answers, which Redis sends
    in the order of the commands, go to their callers in that order. redis-py's pooled client
    spends about 120 us of CPU on a command (a connection taken from the pool and given back,
    the command packed in Python, its timeouts); this spends about 20.

    Only for commands that answer at once: one that blocks would hold up every command behind it.
    A command not answered within SOCKET_TIMEOUT closes the connection, failing what is in flight
    on it (Redis hangs), as a lost connection does; the next command connects again. Commands
    that find no connection share one attempt to make it, which fails them all at once."""

    def __init__(self, url: str):
        self.options = parse_url(url)
        self.tls = _tls_context(self.options)
        self.connection: _PipelinedConnection | None = None
        self.connecting: asyncio.Task | None = None

    async def execute(self, *args) -> Any:
        """Redis's answer to one command, as hiredis reads it (bytes, integers, lists, None); an
        error answer is raised as redis-py raises it (ResponseError, NoScriptError, and the
        ConnectionErrors of a Redis that is loading or full)."""
        connection = self.connection
        if connection is None or connection.closed:
            if self.connecting is None:
                self.connecting = asyncio.create_task(self._connect())
                self.connecting.add_done_callback(self._connected)
            connection = await asyncio.shield(self.connecting)  # a caller that leaves stops no one's attempt
        return await connection.execute(args)

    def _connected(self, attempt: asyncio.Task) -> None:
        self.connecting = None
        if not attempt.cancelled() and attempt.exception() is None:
            self.connection = attempt.result()

    async def _connect(self) -> "_PipelinedConnection":
        loop, options, connection = asyncio.get_running_loop(), self.options, _PipelinedConnection()
        try:
            async with asyncio.timeout(SOCKET_CONNECT_TIMEOUT):
                if "path" in options:
                    await loop.create_unix_connection(lambda: connection, options["path"])
                else:
                    host, port = options.get("host", "localhost"), options.get("port", 6379)
                    await loop.create_connection(lambda: connection, host, port, ssl=self.tls)
                if options.get("password"):
                    await connection.execute(("AUTH", *filter(None, [options.get("username"), options["password"]])))
                if options.get("db"):
                    await connection.execute(("SELECT", options["db"]))
        except BaseException as exc:
            connection.close(redis.exceptions.ConnectionError("Redis could not be reached"))
            if isinstance(exc, OSError | TimeoutError):
                raise redis.exceptions.ConnectionError(f"Redis could not be reached: {exc or 'timed out'}") from exc
            raise
        return connection


def _tls_context(options: dict):
    """For a rediss:// URL, the TLS context redis-py makes from the same URL (its ssl_* query
    parameters, with its defaults); None otherwise."""
    if options.get("connection_class") is not SSLConnection:
        return None
    tls = {name.removeprefix("ssl_"): value for name, value in options.items() if name.startswith("ssl_")}
    return RedisSSLContext(**{"cert_reqs": "required", "check_hostname": True, **tls}).get()


class _PipelinedConnection(asyncio.Protocol):
    """One connection of PipelinedRedis: the commands in flight, each a future and the time by
    which it must be answered, answered in order."""

    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.waiting: collections.deque[tuple[asyncio.Future, float]] = collections.deque()
        self.unsent: list[bytes] = []
        self.watchdog: asyncio.TimerHandle | None = None
        # Error answers become redis-py's exceptions for them (parse_error, as its own hiredis parser).
        self.reader = hiredis.Reader(replyError=BaseParser.parse_error, protocolError=redis.exceptions.InvalidResponse)

    async def execute(self, args: tuple) -> Any:
        if self.closed:
            raise redis.exceptions.ConnectionError("The connection to Redis was lost")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self.unsent:  # sent at the end of this turn of the loop, with the commands that follow
            loop.call_soon(self.send)
        self.unsent.append(hiredis.pack_command(args))
        self.waiting.append((future, loop.time() + SOCKET_TIMEOUT))
        if self.watchdog is None:
            self.watchdog = loop.call_at(self.waiting[0][1], self.check_answered)
        return await future

    def send(self) -> None:
        """Write the commands called since the last send, in one system call (a send costs more
        CPU than a command's packing)."""
        if not self.closed:
            self.transport.write(b"".join(self.unsent))
        self.unsent.clear()

    def check_answered(self) -> None:
        """Close the connection when its oldest command is past its time (Redis hangs): one timer
        for the connection, not one per command (asyncio.timeout costs a command 8 us)."""
        self.watchdog = None
        if self.closed or not self.waiting:
            return
        loop = asyncio.get_running_loop()
        if self.waiting[0][1] <= loop.time():
            self.close(redis.exceptions.TimeoutError(f"Redis did not answer within {SOCKET_TIMEOUT} s"))
        else:
            self.watchdog = loop.call_at(self.waiting[0][1], self.check_answered)

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (answer := self.reader.gets()) is not False:
                _answer(self.waiting.popleft()[0], answer)
        except (redis.exceptions.InvalidResponse, IndexError) as exc:  # (IndexError: an answer to no command)
            self.close(redis.exceptions.ConnectionError(f"Redis's answer could not be read ({exc!r})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(redis.exceptions.ConnectionError(f"Lost the connection to Redis ({exc or 'closed by Redis'})"))

    def close(self, error: Exception) -> None:
        """Fail the commands in flight with `error`; the connection is not used again."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        if self.watchdog is not None:
            self.watchdog.cancel()
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)


def _answer(future: asyncio.Future, answer: Any) -> None:
    if future.done():
        return  # its caller stopped waiting (its request was cancelled)
    if isinstance(answer, redis.exceptions.RedisError):
        future.set_exception(answer)
    else:
        future.set_result(answer)
