"""The live feed's websocket: each persona's outcome, its authentication and Origin check, and on
the real server the agent-key fast path (the key alone decides) and the handshake's Origin check."""

from __future__ import annotations

import json

import httpx
import pytest
import websockets.sync.client as ws
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission
from django.test import Client
from websockets.exceptions import InvalidStatus

from approvals import services as approvals
from approvals.models import ApprovalRequest
from telemetry_site.asgi import application
from tests.conftest import make_key
from tests.runs.factories import make_run, run_payload
from tests.security.matrix import expected_for, websocket_routes
from tests.security.world import MARKER, PERSONAS, READ_SCOPES
from tests.services import asgi_server
from tests.test_scale_out import PLAIN_HTTP_COOKIES, log_in

# --- the websocket: authentication and Origin --------------------------------------------------

OWN_ORIGIN = (b"origin", b"http://localhost:8000")
CROSS_SITE = (b"origin", b"https://evil.example")


def key_header(raw_key: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Api-Key {raw_key}".encode())]


def session_cookie(user) -> tuple[bytes, bytes]:
    browser = Client()
    browser.force_login(user)
    return (b"cookie", f"sessionid={browser.cookies['sessionid'].value}".encode())


def feed_outcome(path: str, headers: list[tuple[bytes, bytes]]) -> str:
    """ok when the live feed says it is ready; the close code when it refuses after the
    handshake; refused when it refuses the handshake itself."""

    async def run() -> str:
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await communicator.connect()
        if not connected:
            return "refused"
        message = json.loads(await communicator.receive_from(5))
        result = "ok" if message["type"] == "ready" else str((await communicator.receive_output(5))["code"])
        await communicator.disconnect()
        return result

    return async_to_sync(run)()


@pytest.mark.django_db(transaction=True)
def test_each_persona_gets_the_expected_outcome_on_every_websocket_route(world):
    for persona in PERSONAS:
        if persona in world.keys:
            headers = key_header(world.keys[persona])
        elif persona in world.users:
            headers = [session_cookie(world.users[persona]), OWN_ORIGIN]
        else:
            headers = []
        seen = {f"GET {route}": feed_outcome(f"/{route}", headers) for route in websocket_routes()}
        assert seen == expected_for(persona, "websocket"), persona


@pytest.mark.django_db(transaction=True)
def test_the_live_feed_refuses_bad_keys_keys_without_the_scope_sessions_of_non_staff_and_cross_site_pages(
    django_user_model,
):
    _, good = make_key("watcher", scopes=["streams:read"])
    _, writer = make_key("writer", scopes=["streams:write"])
    revoked, revoked_raw = make_key("old", scopes=["streams:read"])
    revoked.revoked = True
    revoked.save()
    operator = django_user_model.objects.create_user("operator", is_staff=True)
    operator.user_permissions.set(Permission.objects.filter(codename="view_eventstream"))
    staff = session_cookie(operator)
    unpermitted = session_cookie(django_user_model.objects.create_user("reviewer", is_staff=True))
    visitor = session_cookie(django_user_model.objects.create_user("visitor"))
    prefix, _, secret = good.partition(".")
    cases = {
        "no credentials": [],
        "an unknown key": key_header("nope." + secret),
        "the right prefix with a wrong secret": key_header(f"{prefix}.{secret[::-1]}"),
        "a revoked key": key_header(revoked_raw),
        "a key without streams:read": key_header(writer),
        "a session of a user who is not staff": [visitor, OWN_ORIGIN],
        "a staff session without the permission to read the streams": [unpermitted, OWN_ORIGIN],
        "a staff session from a cross-site page": [staff, CROSS_SITE],
        "a staff session from a sandboxed page": [staff, (b"origin", b"null")],
        "a key from a cross-site page": [*key_header(good), CROSS_SITE],
        "a staff session from our own page": [staff, OWN_ORIGIN],
        "a key from a program (no Origin)": key_header(good),
    }
    seen = {case: feed_outcome("/ws/live/", headers) for case, headers in cases.items()}
    assert seen == {
        "no credentials": "4401",
        "an unknown key": "4401",
        "the right prefix with a wrong secret": "4401",
        "a revoked key": "4401",
        "a key without streams:read": "4403",
        "a session of a user who is not staff": "4403",
        "a staff session without the permission to read the streams": "4403",
        "a staff session from a cross-site page": "refused",
        "a staff session from a sandboxed page": "refused",
        "a key from a cross-site page": "refused",
        "a staff session from our own page": "ok",
        "a key from a program (no Origin)": "ok",
    }


# --- the real server: the agent-key fast path and the websocket handshake -----------------------


def test_the_real_server_lets_the_key_alone_decide_on_its_fast_path_and_a_session_websocket_only_from_our_pages(
    server_env, django_user_model
):
    """Requests with a key skip the session, CSRF and auth middleware (telemetry_site/asgi.py): the
    key alone decides, and a superuser's session cookie sent along grants nothing. A websocket
    with that session is refused at the handshake from a cross-site page."""
    keys = {"a": make_key("alpha"), "b": make_key("beta"), "reader": make_key("reader", agents=["alpha"], scopes=READ_SCOPES)}
    headers = {name: {"Authorization": f"Api-Key {raw}"} for name, (_, raw) in keys.items()}
    run = make_run("alpha")
    asked = approvals.create("alpha", "deploy", {"secret": MARKER}, 600)
    django_user_model.objects.create_superuser("root", password="pw")
    with asgi_server({**server_env, **PLAIN_HTTP_COOKIES}) as base, httpx.Client(base_url=base) as browser:
        log_in(browser, "root", "pw")
        root = {"Cookie": f"sessionid={browser.cookies['sessionid']}"}
        b, decide = headers["b"], f"/api/v1/approvals/{asked.request_id}/decide"
        cases = {
            "B beats for alpha": ("POST", "/api/v1/agents/alpha/heartbeat", b, {}),
            "B waits on alpha's approval": ("POST", f"/api/v1/approvals/{asked.request_id}/wait", b, {"timeout": 0}),
            "B looks at alpha's signals": ("GET", "/api/v1/signals?agent_id=alpha", b, None),
            "B edits alpha's run": ("PATCH", f"/api/v1/runs/{run.event_id}", b, {"items_failed": 1}),
            "the read-only key records a run": ("POST", "/api/v1/runs", headers["reader"], run_payload("alpha")),
            "A decides its own approval": ("POST", decide, headers["a"], {"approved": True}),
            "B decides with root's session": ("POST", decide, {**b, **root}, {"approved": True}),
            "B beats for alpha with root's session": ("POST", "/api/v1/agents/alpha/heartbeat", {**b, **root}, {}),
            "a wrong key with root's session": ("GET", "/api/v1/runs", {"Authorization": "Api-Key nope.nope", **root}, None),
            "A beats for alpha": ("POST", "/api/v1/agents/alpha/heartbeat", headers["a"], {}),
        }
        seen, lean = {}, set()
        for case, (method, path, case_headers, body) in cases.items():
            response = httpx.request(method, f"{base}{path}", headers=case_headers, json=body)
            error = response.json()["error"]["code"] if response.status_code >= 400 else ""
            seen[case] = f"{response.status_code} {error}".strip()
            if "x-frame-options" not in response.headers:  # the lean handler has no clickjacking middleware
                lean.add(case)
        feed_url = base.replace("http", "ws") + "/ws/live/"
        with pytest.raises(InvalidStatus) as cross_site:
            ws.connect(feed_url, origin="https://evil.example", additional_headers=root, open_timeout=10)
        with ws.connect(feed_url, origin=base, additional_headers=root, open_timeout=10) as feed:
            assert json.loads(feed.recv(10))["type"] == "ready"
    assert seen == {
        "B beats for alpha": "403 agent_forbidden",
        "B waits on alpha's approval": "404 not_found",
        "B looks at alpha's signals": "403 agent_forbidden",
        "B edits alpha's run": "403 agent_forbidden",
        "the read-only key records a run": "403 missing_scope",
        "A decides its own approval": "403 agents_cannot_decide",
        "B decides with root's session": "403 agents_cannot_decide",
        "B beats for alpha with root's session": "403 agent_forbidden",
        "a wrong key with root's session": "401 invalid_key",
        "A beats for alpha": "200",
    }
    assert lean == set(cases), "every request with a key took the fast path"
    assert ApprovalRequest.objects.get(pk=asked.pk).status == "pending"
    assert cross_site.value.response.status_code == 403
