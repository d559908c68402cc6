"""The ASGI application: HTTP through Django, websockets through Channels.

Requests to the API that carry an agent key go to a second Django handler, without the
middleware browsers need and without a thread per request (core.fastpaths.agent_handler, which
says why). Everything else, the admin and the API with a staff session, goes through Django's own
handler and the whole middleware list. `/mcp` goes to the MCP server (mcp_server.http), past the
load shedder: its tool calls include long-held waits, as the views exempt from shedding do.
Outermost, core.observing gives every request its id and counts it for the server's own metrics.
"""

import gc
import os

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telemetry_site.settings")
django_application = get_asgi_application()  # sets Django up before the imports below

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from core import events  # noqa: E402
from core.authentication import check_key_ahead, key_from_header  # noqa: E402
from core.fastpaths.agent_handler import AgentApiHandler  # noqa: E402
from core.observing import ObservedHttp, ObservedWebsocket  # noqa: E402
from core.overload import LoadShedder  # noqa: E402
from core.request_body import BodyLimit  # noqa: E402
from core.websocket import origin_checked  # noqa: E402
from mcp_server import http as mcp_http  # noqa: E402
from streaming.routing import websocket_urlpatterns  # noqa: E402

agent_api_application = AgentApiHandler(check_key_ahead, events.publishing_after)


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


shed_application = LoadShedder(http_application, settings.WEB_MAX_IN_FLIGHT, settings.WEB_MAX_LOOP_LAG_MS / 1000)


async def routed_application(scope, receive, send):
    handler = mcp_http.application if mcp_http.serves(scope) else shed_application
    await handler(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": ObservedHttp(BodyLimit(routed_application, settings.HTTP_MAX_BODY_BYTES)),
        "websocket": ObservedWebsocket(origin_checked(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))),
        "lifespan": mcp_http.lifespan,
    }
)

# What is loaded by now (Django, the apps, the libraries: most of the process's objects) lives as
# long as the process: kept out of the garbage collector's full passes, which otherwise walked all of
# it every half second under load and stalled the event loop ~150 ms each time (bench.ingest: the
# bare view's p99 at 64 clients 163 -> 53 ms, 27% more requests answered).
gc.collect()
gc.freeze()
