"""The request being served, as the web server notes it for its own metrics (core.observing) and
its logs (core.logs): its id and its endpoint group, in a context variable.

The endpoint group is the resolved URL pattern's name ("heartbeat", "run-list", "signal-receive"),
"admin" for the admin's pages, "shed" for a request the load shedder refused, and "other" for
what matched no pattern (static files, 404s, a body refused before routing): a bounded set,
never a raw path. The request id is the client's X-Request-ID when well formed, a new one
otherwise.
"""

from __future__ import annotations

import random
import re
from contextvars import ContextVar
from dataclasses import dataclass

from asgiref.sync import iscoroutinefunction
from django.utils.decorators import sync_and_async_middleware

REQUEST_ID_HEADER = b"x-request-id"
_WELL_FORMED_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


@dataclass(slots=True)
class Observed:
    request_id: str
    group: str = "other"
    held: bool = False  # a long wait (core.observing.holding)


current: ContextVar[Observed | None] = ContextVar("observed_request", default=None)


def request_id() -> str | None:
    """The id of the request being served (in this context), if any."""
    observed = current.get()
    return observed.request_id if observed else None


def observed_from(headers) -> Observed:
    """A request's record, its id taken from its ASGI `headers` or new."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER and _WELL_FORMED_ID.fullmatch(value):
            return Observed(value.decode())
    return Observed(f"{random.getrandbits(128):032x}")  # (uuid4's urandom: a third of this middleware's time)


def note_route(request) -> None:
    """The endpoint group of the request Django resolved (see the module's docstring)."""
    observed, match = current.get(), getattr(request, "resolver_match", None)
    if observed is not None and match is not None:
        observed.group = "admin" if "admin" in match.namespaces else match.url_name or "other"


@sync_and_async_middleware
def route_middleware(get_response):
    """note_route for requests through Django's handler and settings.MIDDLEWARE (in both of
    Django's modes, so that the test client's sync handler needs no adapter)."""
    if iscoroutinefunction(get_response):

        async def middleware(request):
            response = await get_response(request)
            note_route(request)
            return response

    else:

        def middleware(request):
            response = get_response(request)
            note_route(request)
            return response

    return middleware
