"""`/mcp`: the MCP tools (mcp_server.tools) over streamable HTTP, for agent keys.

The SDK serves it statelessly: each POST is answered on its own and no session lives in a process,
so any of the web processes behind the port can answer any request. Answers stream (SSE) so a tool
that waits sends progress notifications. The SDK's session manager runs a task group for the life
of the process: `lifespan` holds it (telemetry_site.asgi gives it the ASGI lifespan events).

Every request needs an agent key (`Authorization: Bearer <key>` or `Api-Key <key>`), as the REST
API takes it, and counts under its rate limit; the tools check its scopes and agents. The SDK's
DNS-rebinding guard (a check of Host and Origin for browsers on localhost) is off: a page a
browser loads cannot send the key.
"""

from __future__ import annotations

import json

from django.conf import settings
from mcp.server.transport_security import TransportSecuritySettings
from rest_framework import exceptions

from core.api import describe, failure_response
from core.authentication import authenticate_key_async, key_from_header
from core.models import AgentKey
from core.request_context import current
from core.throttling import count_request
from mcp_server.tools import acting_key, server

PATH = "/mcp"

server.streamable_http_app(
    stateless_http=True,
    max_request_body_size=settings.API_MAX_BODY_BYTES,
    transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
)
manager = server.session_manager


def serves(scope) -> bool:
    return scope["path"].rstrip("/") == PATH


async def application(scope, receive, send) -> None:
    """The MCP endpoint for the request's agent key; the API's error answer without one."""
    if (observed := current.get()) is not None:
        observed.group = "mcp"
    try:
        key = await _authenticate(scope)
    except Exception as exc:  # noqa: BLE001 - _refuse answers refusals and outages, and raises the rest
        await _refuse(send, exc)
        return
    token = acting_key.set(key)  # (the tasks the SDK starts for this request copy it)
    try:
        await manager.handle_request(scope, receive, send)
    finally:
        acting_key.reset(token)


async def _authenticate(scope) -> AgentKey:
    authorization = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
    raw_key = key_from_header(authorization.decode("latin-1"))
    if raw_key is None:
        raise exceptions.NotAuthenticated("Send an agent key: Authorization: Bearer <key> (or Api-Key <key>).")
    key = await authenticate_key_async(raw_key)
    await count_request(key)
    return key


async def _refuse(send, exc: Exception) -> None:
    if isinstance(exc, exceptions.APIException):
        status, body = exc.status_code, json.dumps(describe(exc)).encode()
        wait = getattr(exc, "wait", None)
        headers = [(b"retry-after", str(max(1, round(wait))).encode())] if wait else []
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            status, headers = 401, [(b"www-authenticate", b'Bearer realm="mcp"')]
    elif (failure := failure_response(exc)) is not None:
        status, body = failure.status_code, failure.content
        headers = [(b"retry-after", failure["Retry-After"].encode())] if failure.has_header("Retry-After") else []
    else:
        raise exc
    headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def lifespan(scope, receive, send) -> None:
    """ASGI lifespan: the session manager runs from startup to shutdown."""
    await receive()  # lifespan.startup
    async with manager.run():
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
    await send({"type": "lifespan.shutdown.complete"})
