"""The pipelined Redis connection of the hot path (PipelinedRedis), and the Lua script runner
that uses it (Script). The domain scripts themselves live in their apps; core.redis makes one
PipelinedRedis per event loop (get_pipelined_redis)."""

import asyncio
import collections
import hashlib
from collections.abc import Callable
from typing import Any

import hiredis
import redis.exceptions
from redis._parsers.base import BaseParser
from redis.asyncio.connection import RedisSSLContext, SSLConnection, parse_url
from redis.exceptions import NoScriptError


class Script:
    """A Lua script, run on the pipelined connection `client` gives (the event loop's,
    core.redis.get_pipelined_redis): EVALSHA by its hash (redis-py's registered scripts hash
    theirs on every call), EVAL when Redis does not have it yet (which loads it)."""

    def __init__(self, source: str, client: Callable[[], "PipelinedRedis"]):
        self.source = source
        self.sha1 = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        self.client = client

    async def __call__(self, keys: list[str], args: list) -> Any:
        redis = self.client()
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
    A command not answered within `timeout` seconds closes the connection, failing what is in
    flight on it (Redis hangs), as a lost connection does; the next command connects again.
    Commands that find no connection share one attempt to make it (within `connect_timeout`),
    which fails them all at once."""

    def __init__(self, url: str, timeout: float, connect_timeout: float):
        self.options = parse_url(url)
        self.tls = _tls_context(self.options)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
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
        loop, options, connection = asyncio.get_running_loop(), self.options, _PipelinedConnection(self.timeout)
        try:
            async with asyncio.timeout(self.connect_timeout):
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
    which it must be answered (`timeout` seconds after it was called), answered in order."""

    def __init__(self, timeout: float):
        self.timeout = timeout
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
        self.waiting.append((future, loop.time() + self.timeout))
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
            self.close(redis.exceptions.TimeoutError(f"Redis did not answer within {self.timeout} s"))
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
