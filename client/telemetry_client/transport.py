"""How the questions reach the server (as opposed to the records, which the sender delivers), on
httpx as the sender: one httpx.Client for the process's threads, one httpx.AsyncClient for each
event loop, kept alive, through the proxy the environment names (HTTP_PROXY, HTTPS_PROXY,
ALL_PROXY, NO_PROXY), checking certificates against certifi's or SSL_CERT_FILE's.

A question is written once, as steps (a generator of `Ask` and `Pause`), and run either way:
`drive` in the calling thread, `adrive` awaited in the running event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar, Union

import httpx

from telemetry_client.common import to_json

logger = logging.getLogger("telemetry_client")

T = TypeVar("T")

PATH_SAFE = "/:@!$&'()*+,;=~"  # what a URL path may hold unencoded (RFC 3986), as httpx encodes paths
# Asked again once, on another connection, when the answer was lost this way: a kept-alive
# connection the server closed just as the request went out (its keep-alive timeout, a restart).
# A timeout is not among them: asking again would double the wait.
LOST = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
KEPT_ALIVE = 20  # idle connections kept per client; waits in more threads than that open more


@dataclass(frozen=True)
class Ask:
    """One question: `method` on `path` (under the helper's prefix), `body` sent as JSON. Its
    answer is the JSON the server sent, or `empty` when there is none (logged). `idempotent`
    (default: by method) lets a lost answer be asked for again."""

    method: str
    path: str
    body: Any = None
    params: dict[str, Any] | None = None
    timeout: float | None = None
    empty: Any = None
    idempotent: bool | None = None

    @property
    def repeatable(self) -> bool:
        return self.method in IDEMPOTENT_METHODS if self.idempotent is None else self.idempotent


@dataclass(frozen=True)
class Pause:
    """Wait `seconds` before the next step (time.sleep, or asyncio.sleep when awaited)."""

    seconds: float


Steps = Generator[Union[Ask, Pause], Any, T]  # noqa: UP007 - Python 3.10 cannot subscript an `X | Y` alias


def drive(steps: Steps[T], ask: Callable[[Ask], Any]) -> T:
    """Run `steps` in this thread, `ask` answering each question."""
    answer = None
    try:
        while True:
            step = steps.send(answer)
            if isinstance(step, Pause):
                time.sleep(step.seconds)
                answer = None
            else:
                answer = ask(step)
    except StopIteration as done:
        result: T = done.value  # the generator's return value, which Steps[T] types as T
        return result


async def adrive(steps: Steps[T], ask: Callable[[Ask], Awaitable[Any]]) -> T:
    """Run `steps` in the running event loop, `ask` answering each question."""
    answer = None
    try:
        while True:
            step = steps.send(answer)
            if isinstance(step, Pause):
                await asyncio.sleep(step.seconds)
                answer = None
            else:
                answer = await ask(step)
    except StopIteration as done:
        result: T = done.value  # the generator's return value, which Steps[T] types as T
        return result


class Connections:
    """Kept-alive connections to the server at `api_url`: an httpx.Client that the threads share,
    and an httpx.AsyncClient per event loop (one must not be used from another loop), closed when
    its loop shuts its async generators down (asyncio.run does) or by `aclose()` in it."""

    def __init__(self, api_url: str, headers: dict[str, str]):
        self.api_url, self.headers = api_url, {**headers, "Accept": "application/json"}
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._pid = os.getpid()
        self._loops: dict[asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, AsyncGenerator[None, None]]] = {}

    def ask(self, step: Ask, path: str, timeout: float) -> Any:
        """The JSON answer to `step` at `path`, or None when the server could not be reached or
        refused (logged)."""
        target = urllib.parse.quote(path, safe=PATH_SAFE) + query_string(step.params)
        try:
            client = self._sync_client()
            request = _request(client, step, target, timeout)
            try:
                response = client.send(request)
            except LOST:
                if not step.repeatable:
                    raise
                response = client.send(request)
            return _answer(step.method, target, response)
        except Exception as exc:  # noqa: BLE001 - the SDK never raises into the agent
            return _failed(step.method, target, exc)

    async def aask(self, step: Ask, path: str, timeout: float) -> Any:
        """`ask`, awaited: on this event loop's client. A cancelled task closes its connection,
        which ends the server's side of a held wait."""
        target = urllib.parse.quote(path, safe=PATH_SAFE) + query_string(step.params)
        try:
            client = await self._loop_client()
            request = _request(client, step, target, timeout)
            try:
                response = await client.send(request)
            except LOST:
                if not step.repeatable:
                    raise
                response = await client.send(request)
            return _answer(step.method, target, response)
        except Exception as exc:  # noqa: BLE001 - the SDK never raises into the agent
            return _failed(step.method, target, exc)

    def _settings(self) -> dict[str, Any]:
        url = urllib.parse.urlsplit(self.api_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"TELEMETRY_API_URL {self.api_url!r} is not the http(s) URL of a server")
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=KEPT_ALIVE)
        return {"base_url": self.api_url.rstrip("/"), "headers": self.headers, "limits": limits}

    def _sync_client(self) -> httpx.Client:
        client = self._client
        if client is None or self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():  # forked: the parent's connections are the parent's
                    self._client, self._loops, self._pid = None, {}, os.getpid()
                if self._client is None:
                    self._client = httpx.Client(**self._settings())
                client = self._client
        return client

    async def _loop_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        found = self._loops.get(loop)
        if found is not None:
            return found[0]
        client = httpx.AsyncClient(**self._settings())
        closer = self._closed_with_loop(loop, client)
        with self._lock:
            for gone in [other for other in self._loops if other.is_closed()]:  # closed without shutting down
                del self._loops[gone]
            self._loops[loop] = (client, closer)
        await closer.asend(None)  # its first step registers it with the loop, which closes it at shutdown
        return client

    async def _closed_with_loop(self, loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            with self._lock:
                if self._loops.get(loop, (None,))[0] is client:
                    del self._loops[loop]
            await client.aclose()

    async def aclose(self) -> None:
        """Close the running event loop's client."""
        found = self._loops.get(asyncio.get_running_loop())
        if found is not None:
            await found[1].aclose()

    def close(self) -> None:
        """Close the threads' client (a question after this opens a new one)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _request(client: httpx.Client | httpx.AsyncClient, step: Ask, target: str, timeout: float) -> httpx.Request:
    if step.body is None:
        return client.build_request(step.method, target, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    return client.build_request(step.method, target, content=to_json(step.body), headers=headers, timeout=timeout)


def _answer(method: str, target: str, response: httpx.Response) -> Any:
    if not 200 <= response.status_code < 300:
        logger.warning("telemetry: %s %s failed: %s", method, target, _reason(response))
        return None
    return json.loads(response.content)


def _failed(method: str, target: str, exc: Exception) -> None:
    logger.warning("telemetry: %s %s failed: %s", method, target, str(exc) or type(exc).__name__)
    return None


def query_string(params: dict[str, Any] | None) -> str:
    """`?name=value&...` for the parameters that are not None (booleans as true/false)."""
    pairs = {
        name: str(value).lower() if isinstance(value, bool) else value
        for name, value in (params or {}).items()
        if value is not None
    }
    return f"?{urllib.parse.urlencode(pairs)}" if pairs else ""


def _reason(response: httpx.Response) -> str:
    """The status, with the server's own error message when it sent one."""
    try:
        return f"{response.status_code} {json.loads(response.content)['error']['message']}"
    except (ValueError, KeyError, TypeError):
        return str(response.status_code)
