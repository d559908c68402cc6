"""The live page in a real browser (headless Chromium through Playwright) against the real server."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from core import events
from operations.embedded_redis import free_port
from runs.models import Run
from tests.conftest import logged_in_page, make_key, make_operator
from tests.services import asgi_server
from traces.models import Span

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


@pytest.fixture
def beta_key() -> str:
    return make_key("beta")[1]


def beat(base: str, raw_key: str, agent: str, **fields) -> None:
    response = httpx.post(f"{base}/api/v1/agents/{agent}/heartbeat", json=fields, headers={"Authorization": f"Api-Key {raw_key}"})
    assert response.status_code == 200, response.text


def feed_types(page) -> list[str]:
    """The types of the events listed, sorted (events published together can share a stream id,
    so their order in the feed is not theirs to assert)."""
    return sorted(page.eval_on_selector_all("#feed li[data-type]", "items => items.map(item => item.dataset.type)"))


def test_heartbeats_fold_into_the_agents_table_the_feed_filters_by_type_and_agent_and_the_rate_is_charted(
    live_asgi, reviewer, alpha_key, beta_key, browser
):
    page = logged_in_page(browser, f"{live_asgi}/live/", "reviewer")
    page.wait_for_selector("#connection.connected")
    chart = page.locator("#rate-chart polyline")
    flat = chart.get_attribute("points")

    beat(live_asgi, alpha_key, "alpha", current_task="crawl docs")
    beat(live_asgi, beta_key, "beta", current_task="index")
    events.publish_now(
        [
            events.Event("deploy.finished", {"agent_id": "alpha", "service": "search"}),
            events.Event("deploy.finished", {"agent_id": "beta", "service": "mail"}),
            events.Event("build.failed", {"agent_name": "alpha", "step": "test"}),
            events.Event("signal.sent", {"source_agent": "beta", "target_agent": "alpha", "signal_type": "handoff"}),
        ]
    )
    page.locator("#feed li[data-type='signal.sent']").wait_for()
    # Heartbeats: in the agents table (its task and last beat), not in the feed unless asked for.
    page.locator("#agents tr[data-agent=alpha] td.task", has_text="crawl docs").wait_for()
    assert int(page.inner_text("#agents tr[data-agent=beta] td.last-beat").removesuffix(" s ago")) <= 3
    assert feed_types(page) == ["build.failed", "deploy.finished", "deploy.finished", "signal.sent"]
    assert page.inner_text("#folded") == "2 heartbeats not listed"
    page.check("#show-heartbeats")
    assert feed_types(page).count("agent.heartbeat") == 2 and page.inner_text("#folded") == ""
    page.uncheck("#show-heartbeats")

    page.select_option("#type-filter", "deploy.finished")
    assert feed_types(page) == ["deploy.finished", "deploy.finished"]
    page.select_option("#agent-filter", "alpha")
    assert feed_types(page) == ["deploy.finished"] and "search" in page.inner_text("#feed li")
    page.select_option("#type-filter", "")  # alpha's events: its own, and the signal sent to it
    assert feed_types(page) == ["build.failed", "deploy.finished", "signal.sent"]
    page.select_option("#type-filter", "agent.heartbeat")  # chosen by type: listed, folded or not
    assert feed_types(page) == ["agent.heartbeat"]

    # A new event of a type not chosen stays out of the list; one chosen comes in live.
    page.select_option("#type-filter", "build.failed")
    later = [
        events.Event("deploy.finished", {"agent_id": "alpha"}),
        events.Event("build.failed", {"agent_id": "alpha", "step": "lint"}),
    ]
    events.publish_now(later)
    page.locator("#feed li", has_text="lint").wait_for()
    assert feed_types(page) == ["build.failed", "build.failed"]

    # Every event counts towards the rate, heartbeats included.
    page.wait_for_function("parseFloat(document.getElementById('rate').textContent) > 0")
    assert chart.get_attribute("points") != flat
    assert any(float(point.split(",")[1]) < 27 for point in chart.get_attribute("points").split())


def test_payloads_are_shown_as_fields_and_as_text_never_as_markup(live_asgi, reviewer, browser):
    page = logged_in_page(browser, f"{live_asgi}/live/", "reviewer")
    page.wait_for_selector("#connection.connected")
    hostile = {
        "agent_id": "<img src=x onerror=window.pwned=1>",
        "note": "<script>window.pwned=2</script>",
        "<img src=y onerror=window.pwned=3>": "as a field name",
        "detail": {"html": "<b onmouseover=window.pwned=4>bold</b>", "count": 3},
        "tags": ["a", "<i>b</i>"],
        "empty": "",
        "at": "2026-01-02T03:04:05+00:00",
    }
    events.publish_now([events.Event("note.added", hostile)])
    item = page.locator("#feed li[data-type='note.added']")
    item.wait_for()
    pairs = dict(zip(item.locator("dt").all_inner_texts(), item.locator("dd").all_inner_texts(), strict=True))
    assert pairs["note"] == "<script>window.pwned=2</script>"
    assert pairs["<img src=y onerror=window.pwned=3>"] == "as a field name"
    assert pairs["detail.html"] == "<b onmouseover=window.pwned=4>bold</b>" and pairs["detail.count"] == "3"
    assert pairs["tags"] == '["a","<i>b</i>"]' and "empty" not in pairs
    assert item.locator("dd[title='2026-01-02T03:04:05+00:00']").count() == 1  # a time of day, the whole value on hover
    assert item.locator(".head .agent").inner_text() == "<img src=x onerror=window.pwned=1>"
    assert page.locator("#agent-filter option", has_text="<img src=x onerror=window.pwned=1>").count() == 1
    assert page.locator("#feed img, #feed script, #feed b, #feed i").count() == 0
    item.locator("dd", has_text="bold").hover()
    assert page.evaluate("window.pwned") is None


@pytest.fixture
def watchers(django_user_model):
    """Staff who may read the streams: one who may view agents but not runs, one who may not view agents."""
    streams = Permission.objects.get(codename="view_eventstream")
    no_runs = django_user_model.objects.create_user("no-runs", password="pw", is_staff=True)
    no_runs.user_permissions.set([streams, Permission.objects.get(codename="view_agent")])
    no_agents = django_user_model.objects.create_user("no-agents", password="pw", is_staff=True)
    no_agents.user_permissions.set([streams])


@pytest.fixture
def records_of_alpha_and_beta():
    """A run and a trace of each."""
    now = timezone.now()
    for agent in ("alpha", "beta"):
        Run.objects.create(event_id=uuid.uuid4(), run_id=f"{agent}-run", agent_name=agent, job_type="crawl", start_time=now)
        trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
        Span.objects.create(
            event_id=trace_id + span_id,
            trace_id=trace_id,
            span_id=span_id,
            name="crawl",
            start_time=now,
            end_time=now,
            agent_name=agent,
        )


def test_each_agent_links_to_its_records_on_the_pages_the_user_may_open(
    live_asgi, reviewer, watchers, alpha_key, beta_key, records_of_alpha_and_beta, browser
):
    for raw_key in (alpha_key, beta_key):
        response = httpx.post(
            f"{live_asgi}/api/v1/approvals", json={"approval_type": "deploy"}, headers={"Authorization": f"Api-Key {raw_key}"}
        )
        assert response.status_code == 201, response.text
    page = logged_in_page(browser, f"{live_asgi}/live/", "reviewer")
    page.wait_for_selector("#connection.connected")
    beat(live_asgi, alpha_key, "alpha", current_task="crawl docs")
    links = page.locator("#agents tr[data-agent=alpha] .links a")
    links.first.wait_for()
    hrefs = dict(zip(links.all_inner_texts(), [links.nth(i).get_attribute("href") for i in range(links.count())], strict=True))
    assert hrefs == {
        "runs": "/admin/runs/run/?agent_name__exact=alpha",
        "traces": "/traces/?agent=alpha",
        "signals": "/api/v1/signals?agent_id=alpha",
        "approvals": "/admin/approvals/approvalrequest/?agent_id__exact=alpha",
    }
    for label, selector in [("runs", "#result_list"), ("approvals", "#result_list"), ("traces", "table.traces")]:
        response = page.goto(live_asgi + hrefs[label])
        assert response.status == 200, label
        listed = page.inner_text(selector)
        assert "alpha" in listed and "beta" not in listed, label  # filtered to alpha (beta's exist)
    response = page.goto(live_asgi + hrefs["signals"])
    assert response.status == 200 and response.json() == []

    # Only the pages the user may open; no agents table for one who may not view agents.
    page = logged_in_page(browser, f"{live_asgi}/live/", "no-runs")
    page.wait_for_selector("#connection.connected")
    page.locator("#agents tr[data-agent=alpha] .links a").first.wait_for()
    assert page.locator("#agents tr[data-agent=alpha] .links a").all_inner_texts() == ["signals"]
    page = logged_in_page(browser, f"{live_asgi}/live/", "no-agents")
    page.wait_for_selector("#connection.connected")
    beat(live_asgi, alpha_key, "alpha", current_task="still here")
    page.locator("#agent-filter option[value=alpha]").wait_for(state="attached")
    assert page.locator("#agents").count() == 0


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


def test_the_live_page_opens_on_the_last_minutes_events_and_not_on_older_ones(live_asgi, reviewer, browser):
    from core.redis import get_redis
    from core.streams import TYPES_KEY, stream_key

    two_minutes_ago = int((time.time() - 120) * 1000)
    old = {"event_type": "deploy.finished", "timestamp": "", "source": "test", "data": json.dumps({"service": "two minutes ago"})}
    get_redis().xadd(stream_key("deploy.finished"), old, id=f"{two_minutes_ago}-0")
    get_redis().sadd(TYPES_KEY, "deploy.finished")
    events.publish_now([events.Event("deploy.finished", {"service": "before the page"})])

    page = logged_in_page(browser, f"{live_asgi}/live/", "reviewer")
    page.wait_for_selector("#connection.connected")
    feed = page.locator("#feed li[data-type='deploy.finished']")
    feed.filter(has_text="before the page").wait_for()
    assert feed.count() == 1  # the one of two minutes ago is not replayed
    assert page.inner_text("#rate") in ("0", "0.0")  # replayed events did not arrive now
