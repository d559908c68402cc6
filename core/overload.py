"""Load shedding. Beyond WEB_MAX_IN_FLIGHT requests at once in one web process, a new request is
answered at once with 429 and `Retry-After` instead of queueing until its client times out: the
SDK backs off and keeps its records, and the requests already in progress keep their latency.

Views that hold a request open while they wait (signal and approval waits, stream consumes) are
exempt: a waiter costs a coroutine, not work, and a thousand of them are normal. So is /health,
so that a busy process is not taken for a dead one.
"""

from __future__ import annotations

import functools
import json

from django.urls import Resolver404, resolve

from core.api import error_body

RETRY_AFTER_SECONDS = 1
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
    """ASGI middleware for HTTP: counts the requests in progress, refuses those over `limit`."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit
        self.in_flight = 0

    async def __call__(self, scope, receive, send) -> None:
        if not self.limit or _exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            await _refuse(send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


async def _refuse(send) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(_REFUSAL)).encode()),
        (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": _REFUSAL})
