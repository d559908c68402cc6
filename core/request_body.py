"""The largest request body the web server reads, for every request, before any handler sees it.

Django's ASGI handler reads a request's whole body before anything else runs, into a temporary
file that moves to disk beyond FILE_UPLOAD_MAX_MEMORY_SIZE (2.5 MB), whatever its size: the
limits of the views (API_MAX_BODY_BYTES, BATCH_MAX_BODY_BYTES, OTLP_MAX_BODY_BYTES) and
DATA_UPLOAD_MAX_MEMORY_SIZE are checked only afterwards, on what was spooled. This middleware
answers 413 as soon as a body is known to be larger than HTTP_MAX_BODY_BYTES: at once from its
Content-Length, or when a chunked body has sent that much, and the request reaches no view.
"""

from __future__ import annotations

import json

from core.api import error_body


def _refusal(limit: int) -> bytes:
    message = f"The request body is larger than {limit} bytes (HTTP_MAX_BODY_BYTES)."
    return json.dumps(error_body("too_large", message)).encode()


class BodyLimit:
    """ASGI middleware for HTTP: bodies beyond `limit` bytes get 413 and reach no application."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        declared = next((value for name, value in scope["headers"] if name == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        received = 0
        refused = False

        async def bounded_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Answered here; to the application the client has gone (Django stops reading).
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, bounded_receive, send)

    async def _refuse(self, send) -> None:
        body = _refusal(self.limit)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
