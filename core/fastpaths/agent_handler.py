"""The Django handler for API requests that carry an agent key (telemetry_site.asgi sends them
here): without the middleware browsers need (sessions, CSRF, messages, clickjacking) and without
the two hand-overs to a thread Django makes around every request. Under ASGI each middleware hands
the request to a thread and back, and each request starts a thread of its own: an async view that
touches no database (a heartbeat, a signal) then costs no thread at all.

Import it once Django is set up (it imports django.contrib.auth's models)."""

import asyncio
import contextlib

from asgiref.sync import sync_to_async
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.db import close_old_connections
from django.middleware.security import SecurityMiddleware
from django.urls import set_script_prefix

from core.db import opened_connection, start_request
from core.request_context import note_route


class AgentApiHandler(ASGIHandler):
    """Django for requests authenticated by an agent key: of the middleware, only the security
    headers and HTTPS redirect, applied in the event loop (they touch neither database nor
    session), and the Content-Length CommonMiddleware would have added."""

    def load_middleware(self, is_async=False) -> None:
        self._view_middleware, self._template_response_middleware, self._exception_middleware = [], [], []
        security = SecurityMiddleware(self._get_response_async)
        # Errors (a 404, a bad Host) become responses here, so they get the headers below too.
        view = convert_exception_to_response(self._get_response_async)

        async def respond(request):
            request.user = AnonymousUser()  # what AuthenticationMiddleware gives without a session
            request.auser = anonymous_user
            request.get_host()  # ALLOWED_HOSTS, as CommonMiddleware checks it: DisallowedHost is a 400
            response = security.process_request(request) or await view(request)
            note_route(request)
            if not response.streaming and not response.has_header("Content-Length"):
                response.headers["Content-Length"] = str(len(response.content))
            return security.process_response(request, response)

        self._middleware_chain = convert_exception_to_response(respond)

    async def handle(self, scope, receive, send):
        """Django's, less its two hand-overs to a thread per request, which start a thread for
        each request (a thread-sensitive context of its own): request_started, whose receivers
        close the context's database connections (a new context has none) and reset DEBUG's
        query log; and the response's close, needed in a thread only when the request opened a
        database connection (or may have: whenever it did not end normally)."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            return

        async def process_request():
            start_request()
            response = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):  # the client left during the send
                await self.send_response(response, send)
            return response, opened_connection()  # (the view's context: this task's)

        # As Django: a client that disconnects cancels its request (a held wait stops waiting).
        tasks = [asyncio.create_task(self.listen_for_disconnect(receive)), asyncio.create_task(process_request())]
        response, opened = None, True
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if not task.done():
                    task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, RequestAborted):
                    await task
            if not tasks[1].cancelled():
                response, opened = tasks[1].result()
        finally:
            for task in tasks:
                task.cancel()
            if opened:  # closed in its thread, by the request_finished receiver
                await sync_to_async(response.close if response else close_old_connections)()
            else:
                response.close()
            body_file.close()


async def anonymous_user() -> AnonymousUser:
    return AnonymousUser()
