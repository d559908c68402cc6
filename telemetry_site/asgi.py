"""The ASGI application: HTTP through Django, websockets through Channels.

Requests to the API that carry an agent key go to a second Django handler, without the
middleware browsers need (sessions, CSRF, messages, clickjacking) and without the two hand-overs
to a thread Django makes around every request. Under ASGI each middleware hands the request to a
thread and back, and each request starts a thread of its own: an async view that touches no
database (a heartbeat, a signal) then costs no thread at all. bench/coordination.py measures the
difference: a bare async view answers about three times as many requests. Everything else, the
admin and the API with a staff session, goes through Django's own handler and the whole
middleware list.
"""

import asyncio
import contextlib
import os

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telemetry_site.settings")
django_application = get_asgi_application()  # sets Django up before the imports below

from asgiref.sync import sync_to_async  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.auth.models import AnonymousUser  # noqa: E402
from django.core.exceptions import RequestAborted  # noqa: E402
from django.core.handlers.asgi import ASGIHandler, get_script_prefix  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402
from django.db import close_old_connections  # noqa: E402
from django.middleware.security import SecurityMiddleware  # noqa: E402
from django.urls import set_script_prefix  # noqa: E402

from core.authentication import key_from_header  # noqa: E402
from core.db import opened_connection, start_request  # noqa: E402
from core.overload import LoadShedder  # noqa: E402
from core.websocket import origin_checked  # noqa: E402
from streaming.routing import websocket_urlpatterns  # noqa: E402


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


agent_api_application = AgentApiHandler()


def carries_agent_key(scope) -> bool:
    if not scope["path"].startswith("/api/"):
        return False
    authorization = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
    try:
        return key_from_header(authorization.decode("latin-1")) is not None
    except Exception:  # noqa: BLE001 - a malformed header: the whole stack answers it
        return False


async def http_application(scope, receive, send):
    handler = agent_api_application if carries_agent_key(scope) else django_application
    await handler(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": LoadShedder(http_application, settings.WEB_MAX_IN_FLIGHT, settings.WEB_MAX_LOOP_LAG_MS / 1000),
        "websocket": origin_checked(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
