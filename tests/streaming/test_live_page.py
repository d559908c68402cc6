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
