"""What the web server counts of each request and websocket for its own metrics
(core.selfmetrics): the endpoint group, the status and the time taken, with the request's id
(core.request_context) in a context variable while it is served and in its X-Request-ID header.
"""

from __future__ import annotations

import contextlib
import time

from core import selfmetrics
from core.request_context import REQUEST_ID_HEADER, current, observed_from

NO_RESPONSE = 499  # the client left before the application answered (nginx's code for it)


class ObservedHttp:
    """ASGI middleware for HTTP, outermost: the request's id (in a context variable and the
    X-Request-ID response header), and its count and duration for the server's metrics."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        observed = observed_from(scope["headers"])
        token = current.set(observed)
        header = (REQUEST_ID_HEADER, observed.request_id.encode())
        status = NO_RESPONSE

        async def observed_send(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        selfmetrics.start_flushing()
        started = time.perf_counter()
        try:
            await self.app(scope, receive, observed_send)
        except BaseException:
            if status == NO_RESPONSE:
                status = 500  # what the web server answers
            raise
        finally:
            current.reset(token)
            selfmetrics.count_request(observed.group, status, None if observed.held else time.perf_counter() - started)


def shed(reason: str) -> None:
    """The load shedder refuses the current request (reason: one of selfmetrics.SHED_REASONS)."""
    selfmetrics.count("shed", reason)
    if (observed := current.get()) is not None:
        observed.group = "shed"


@contextlib.contextmanager
def holding():
    """Around a long wait: counted as held (now and in all), its request out of the latency histogram."""
    if (observed := current.get()) is not None:
        observed.held = True
    selfmetrics.count("waits")
    selfmetrics.add_to_gauge("waits_held", 1)
    try:
        yield
    finally:
        selfmetrics.add_to_gauge("waits_held", -1)


class ObservedWebsocket:
    """ASGI middleware for websockets: clients connected, handshakes, the server's close codes."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        accepted = False

        async def observed_send(message) -> None:
            nonlocal accepted
            if message["type"] == "websocket.accept":
                accepted = True
                selfmetrics.count("websocket_connections", "accepted")
                selfmetrics.add_to_gauge("websocket_clients", 1)
            elif message["type"] == "websocket.close":
                if accepted:
                    selfmetrics.count("websocket_closes", message.get("code", 1000))
                else:
                    selfmetrics.count("websocket_connections", "refused")
            await send(message)

        selfmetrics.start_flushing()
        try:
            await self.app(scope, receive, observed_send)
        finally:
            if accepted:
                selfmetrics.add_to_gauge("websocket_clients", -1)
