"""The live page in a real browser (headless Chromium through Playwright) against the real server."""

from __future__ import annotations

import httpx
import pytest

from core import events
from operations.embedded_redis import free_port
from tests.conftest import logged_in_page, make_key, make_operator
from tests.services import asgi_server

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_live_page_needs_a_staff_login(live_asgi):
    response = httpx.get(f"{live_asgi}/live/")
    assert response.status_code == 302 and "/admin/login/" in response.headers["location"]


@pytest.fixture
def reviewer(django_user_model):
    """Made before the browser starts: Playwright's sync API runs an event loop in this thread."""
    return make_operator(django_user_model, "reviewer")


@pytest.fixture
def alpha_key() -> str:
    return make_key("alpha")[1]


def test_the_live_page_shows_heartbeats_and_events_without_reload_and_recovers_from_a_restart(
    server_env, reviewer, alpha_key, browser, tmp_path
):
    headers = {"Authorization": f"Api-Key {alpha_key}"}
    port = free_port()
    with asgi_server(server_env, port=port) as base:
        page = logged_in_page(browser, f"{base}/live/", "reviewer")
        page.wait_for_url(f"{base}/live/")
        page.wait_for_selector("#connection.connected")

        beat = {"status": "indexing", "progress": 0.42, "current_task": "crawl docs"}
        httpx.post(f"{base}/api/v1/agents/alpha/heartbeat/start", json={"display_name": "Alpha"}, headers=headers)
        assert httpx.post(f"{base}/api/v1/agents/alpha/heartbeat", json=beat, headers=headers).status_code == 200
        row = page.locator("#agents tr[data-agent=alpha]")
        row.locator("td.task", has_text="crawl docs").wait_for()
        assert row.locator("progress").get_attribute("value") == "42"
        assert "indexing" in row.inner_text() and "Alpha" in row.inner_text()

        events.publish_now([events.Event("deploy.finished", {"service": "search"})])
        page.locator("#feed li[data-type='deploy.finished']").wait_for()
        assert page.inner_text("#pending-approvals b") == "0"
        httpx.post(f"{base}/api/v1/approvals", json={"approval_type": "deploy"}, headers=headers)
        page.locator("#pending-approvals b", has_text="1").wait_for()
        link = page.get_attribute("#pending-approvals", "href")
        assert link.endswith("/admin/approvals/approvalrequest/?status__exact=pending")
        page.screenshot(path=str(tmp_path / "live.png"), full_page=True)

    # The server is gone: the page says so, and catches up once it is back.
    page.wait_for_selector("#connection.disconnected")
    events.publish_now([events.Event("deploy.finished", {"service": "while-down"})])
    with asgi_server(server_env, port=port):
        page.locator("#feed li[data-type='deploy.finished']", has_text="while-down").wait_for(timeout=20_000)
        page.wait_for_selector("#connection.connected")
        assert page.locator("#feed li[data-type='deploy.finished']").count() == 2


def staff_with(django_user_model, username: str, *scopes: str):
    """A staff user holding the model permissions behind `scopes` (core.scopes.permissions_for), and no other."""
    from django.contrib.auth.models import Permission

    from core.scopes import permissions_for

    user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
    wanted = {perm.split(".")[1] for scope in scopes for perm in permissions_for(scope)}
    user.user_permissions.set(Permission.objects.filter(codename__in=wanted))
    return user


@pytest.fixture
def stream_reader(django_user_model):
    """Staff who may read the streams, not the agents' state nor the approval requests."""
    return staff_with(django_user_model, "watcher", "streams:read")


def test_without_the_agents_and_approvals_permissions_the_live_page_shows_the_feed_alone_without_error(
    server_env, stream_reader, alpha_key, browser
):
    """The agents' table needs coordination.view_agent and the pending count (and the approval
    requests' events) approvals.view_approvalrequest: a staff member with only the streams'
    permission gets neither (the table not even filled from the feed's agent.* events), and the
    page still connects and shows the other events, with no script error."""
    headers = {"Authorization": f"Api-Key {alpha_key}"}
    with asgi_server(server_env) as base:
        page = logged_in_page(browser, f"{base}/live/", "watcher")
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.wait_for_url(f"{base}/live/")
        page.wait_for_selector("#connection.connected")
        assert httpx.post(f"{base}/api/v1/agents/alpha/heartbeat/start", json={}, headers=headers).status_code == 200
        assert httpx.post(f"{base}/api/v1/approvals", json={"approval_type": "deploy"}, headers=headers).status_code == 201
        events.publish_now([events.Event("deploy.finished", {"service": "after"})])  # after the others
        page.locator("#feed li[data-type='deploy.finished']").wait_for()
        page.locator("#feed li[data-type='agent.started']").wait_for()
        page.wait_for_timeout(1200)  # a render tick of the page (every second)
        # The request's event carries its context: the approval requests' to show.
        assert page.locator("#feed li[data-type='approval.requested']").count() == 0
        assert page.locator("#agents").count() == 0
        assert page.locator("#pending-approvals").count() == 0
        assert "Pending approvals" not in page.content()
        assert page.locator("#connection.connected").count() == 1
    assert errors == []


def test_the_live_page_shows_the_agents_and_the_pending_count_each_to_whom_may_view_them(client, django_user_model):
    make_key("alpha")
    from approvals import services

    services.create("alpha", "deploy", {}, 600)
    seen = {}
    for name, scopes in {
        "feed only": ("streams:read",),
        "agents": ("streams:read", "coordination:read"),
        "approvals": ("streams:read", "approvals:read"),
    }.items():
        client.force_login(staff_with(django_user_model, name.replace(" ", "-"), *scopes))
        page = client.get("/live/")
        assert page.status_code == 200, name
        text = page.content.decode()
        seen[name] = ('id="agents"' in text, 'id="pending-approvals"' in text)
    assert seen == {"feed only": (False, False), "agents": (True, False), "approvals": (False, True)}
