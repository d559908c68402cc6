"""The ASGI application: HTTP through Django, websockets through Channels.

Requests to the API that carry an agent key go to a second Django handler without the middleware
browsers need (sessions, CSRF, messages, clickjacking). Under ASGI each of those hands the
request to a thread and back, twice; skipping them doubles the requests a process serves
(bench/coordination.py) and takes milliseconds off every heartbeat and signal. Everything else,
the admin and the API with a staff session, goes through the whole middleware list.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telemetry_site.settings")
django_application = get_asgi_application()  # sets Django up before the imports below

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.auth.models import AnonymousUser  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402
from django.middleware.security import SecurityMiddleware  # noqa: E402

from core.authentication import key_from_header  # noqa: E402
from core.websocket import origin_checked  # noqa: E402
from streaming.routing import websocket_urlpatterns  # noqa: E402


class AgentApiHandler(ASGIHandler):
    """Django for requests authenticated by an agent key: of the middleware, only the security
    headers and HTTPS redirect, applied in the event loop (they touch neither database nor
    session), and the Content-Length CommonMiddleware would have added."""

    def load_middleware(self, is_async=False) -> None:
        self._view_middleware, self._template_response_middleware, self._exception_middleware = [], [], []
        security = SecurityMiddleware(self._get_response_async)

        async def respond(request):
            request.user = AnonymousUser()  # what AuthenticationMiddleware gives without a session
            request.auser = anonymous_user
            response = security.process_request(request) or await self._get_response_async(request)
            if not response.streaming and not response.has_header("Content-Length"):
                response.headers["Content-Length"] = str(len(response.content))
            return security.process_response(request, response)

        self._middleware_chain = convert_exception_to_response(respond)


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
        "http": http_application,
        "websocket": origin_checked(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
