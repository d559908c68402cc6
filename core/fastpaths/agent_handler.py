"""The Django handler for API requests that carry an agent key (telemetry_site.asgi sends them
here): without the middleware browsers need (sessions, CSRF, messages, clickjacking) and without
the two hand-overs to a thread Django makes around every request. Under ASGI each middleware hands
the request to a thread and back, and each request starts a thread of its own: an async view that
touches no database (a heartbeat, a signal) then costs no thread at all.

Import it once Django is set up (it imports django.contrib.auth's models)."""

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, iscoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.db import close_old_connections
from django.middleware.security import SecurityMiddleware
from django.urls import set_script_prefix

from core.db import opened_connection, start_request
from core.fastpaths.sqlite_writer import one_sqlite_writer
from core.request_context import note_route


class AgentApiHandler(ASGIHandler):
    """Django for requests authenticated by an agent key: of the middleware, only the security
    headers and HTTPS redirect, applied in the event loop (they touch neither database nor
    session), and the Content-Length CommonMiddleware would have added. Sync code runs on a few
    long-lived threads (WEB_SYNC_THREADS) rather than a new thread each request."""

    def __init__(self, check_key, publishing_after):
        """`check_key(request)` is awaited before a sync view (core.authentication.check_key_ahead);
        `publishing_after(work)` awaits a request's work, and publishes the events it held back
        before the response is sent (core.events.publishing_after)."""
        self.check_key, self.publishing_after = check_key, publishing_after
        self.threads = [SyncThread() for _ in range(settings.WEB_SYNC_THREADS)]
        super().__init__()

    async def __call__(self, scope, receive, send):
        """Django's, but the request's sync code (its view, the end of its connections) runs on
        the least busy of this handler's threads, all of it on that one, as on Django's new thread."""
        if scope["type"] != "http":
            raise ValueError(f"Django serves HTTP only, not {scope['type']}")
        thread = min(self.threads, key=lambda thread: thread.requests)
        thread.requests += 1
        try:
            async with ThreadSensitiveContext(executor=thread.executor):
                await self.handle(scope, receive, send)
        finally:
            thread.requests -= 1

    def load_middleware(self, is_async=False) -> None:
        self._view_middleware, self._template_response_middleware, self._exception_middleware = [], [], []
        security = SecurityMiddleware(self._get_response_async)

        async def keyed_response(request):
            # A sync view's key is checked here, on the event loop's pipelined Redis connection,
            # not by a Redis round trip from its thread (~15% of a single write).
            if not iscoroutinefunction(self.resolve_request(request).func):
                await self.check_key(request)
            return await self._get_response_async(request)

        # Errors (a 404, a bad Host) become responses here, so they get the headers below too.
        view = convert_exception_to_response(keyed_response)

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

    def resolve_request(self, request):
        """Django's, once a request: keyed_response resolves it first."""
        return request.resolver_match or super().resolve_request(request)

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
            response = await self.publishing_after(self.run_get_response(request))
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


class SyncThread:
    """One thread for the sync code of requests, and how many requests use it now. It keeps its
    SQLite connection from one request to the next (opening one was ~9% of a single write), and
    its write transactions queue on the process's lock (core.fastpaths.sqlite_writer);
    PostgreSQL's connections still go back to their pool at the end of each request."""

    def __init__(self):
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent-api", initializer=one_sqlite_writer)
        self.requests = 0


async def anonymous_user() -> AnonymousUser:
    return AnonymousUser()
