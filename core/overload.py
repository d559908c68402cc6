"""Load shedding. A web process refuses new work at once, with 429 and `Retry-After`, instead of
queueing it until its client times out: the SDK backs off and keeps its records, and the
requests already in progress keep their latency. It is full when WEB_MAX_IN_FLIGHT requests are
in progress, or when its event loop runs more than WEB_MAX_LOOP_LAG_MS late: with the CPU
saturated, requests queue in front of the application (socket buffers, the loop's ready queue)
where no count of requests in progress sees them, but the loop's lateness does.

Views that hold a request open while they wait (signal and approval waits, stream consumes) are
exempt: a waiter costs a coroutine, not work, and a thousand of them are normal (one key holds at
most HELD_WAITS_PER_KEY of them, core.quotas). So is /health,
so that a busy process is not taken for a dead one.
"""

from __future__ import annotations

import asyncio
import functools
import json

from django.urls import Resolver404, resolve

from core.api import error_body
from core.observing import shed

RETRY_AFTER_SECONDS = 1
LAG_PROBE_SECONDS = 0.05
_REFUSAL = json.dumps(
    error_body("overloaded", "The server is at capacity; retry after the number of seconds in Retry-After.")
).encode()


def exempt_from_shedding(view):
    """Mark a view whose requests are never shed (see the module's docstring)."""
    view.exempt_from_shedding = True
    return view


@functools.lru_cache(maxsize=4096)
def _exempt(path: str) -> bool:
    try:
        view = resolve(path).func
    except Resolver404:
        return False
    return getattr(view, "exempt_from_shedding", False)


class LoadShedder:
    """ASGI middleware for HTTP: refuses requests beyond `limit` in progress (0: no limit) or
    while the event loop is more than `max_lag` seconds late (0: never)."""

    def __init__(self, app, limit: int, max_lag: float):
        self.app = app
        self.limit = limit
        self.max_lag = max_lag
        self.in_flight = 0
        self.lag = 0.0
        self._probe: asyncio.Task | None = None
        self._probed_loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope, receive, send) -> None:
        if _exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        if self.max_lag and self._probed_loop is not loop:  # (a new loop: a test's, say)
            self._probed_loop, self.lag = loop, 0.0
            self._probe = loop.create_task(self._measure_lag())
        full = "in_flight" if self.limit and self.in_flight >= self.limit else None
        late = "loop_lag" if self.max_lag and self.lag > self.max_lag else None
        if full or late:
            shed(full or late)
            await _refuse(send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _measure_lag(self) -> None:
        """How late the loop runs a callback due now: the wait of every ready request."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LAG_PROBE_SECONDS
            await asyncio.sleep(LAG_PROBE_SECONDS)
            self.lag = loop.time() - due


async def _refuse(send) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(_REFUSAL)).encode()),
        (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": _REFUSAL})
