"""Events about one agent's private business (a directed signal, an approval request) reach only
keys that may act as that agent, and staff: on the streams API and on the live feed, as the
signals and approvals APIs let only them read their subjects."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from tests.conftest import key_client, make_key
from tests.streaming.test_live_feed import Watcher, key_headers

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "the launch codes"


@pytest.fixture
def private_and_public(agent) -> None:
    """alpha signals gamma (private to both), signals everyone (public), asks for an approval (private to alpha)."""
    assert (
        agent.post(
            "/api/v1/signals", {"signal_type": "go", "target_agent": "gamma", "payload": {"s": SECRET}}, format="json"
        ).status_code
        == 201
    )
    assert (
        agent.post("/api/v1/signals", {"signal_type": "all", "target_agent": None, "payload": {}}, format="json").status_code
        == 201
    )
    assert (
        agent.post("/api/v1/approvals", {"approval_type": "deploy", "context": {"s": SECRET}}, format="json").status_code == 201
    )


def reader(agent_id: str):
    return key_client(make_key(f"{agent_id}-reader", agents=[agent_id], scopes=["streams:read"])[1])


def signal_types(events: list[dict]) -> list[str]:
    return [event["data"]["signal_type"] for event in events if event["event_type"] == "signal.sent"]


def approvals(events: list[dict]) -> list[str]:
    return [event["data"]["agent_id"] for event in events if event["event_type"] == "approval.requested"]


@pytest.mark.usefixtures("private_and_public")
def test_recent_events_leave_out_what_is_private_to_other_agents(staff):
    for agent_id, signals, asked in [("beta", ["all"], []), ("gamma", ["go", "all"], []), ("alpha", ["go", "all"], ["alpha"])]:
        client = reader(agent_id)
        assert signal_types(client.get("/api/v1/streams/signal.sent").json()) == signals, agent_id
        assert approvals(client.get("/api/v1/streams/approval.requested").json()) == asked, agent_id
    assert signal_types(staff.get("/api/v1/streams/signal.sent").json()) == ["go", "all"]
    assert approvals(staff.get("/api/v1/streams/approval.requested").json()) == ["alpha"]


@pytest.mark.usefixtures("private_and_public")
def test_consume_leaves_them_out_but_moves_past_them():
    query = {"types": "signal.sent,approval.requested", "after": "0"}
    insider = reader("alpha").get("/api/v1/streams/consume", query).json()
    assert signal_types(insider["events"]) == ["go", "all"] and approvals(insider["events"]) == ["alpha"]
    stranger = reader("beta").get("/api/v1/streams/consume", query).json()
    assert signal_types(stranger["events"]) == ["all"] and approvals(stranger["events"]) == []
    assert stranger["after"] == insider["after"]  # the next consume starts after them: they are not offered again
    assert SECRET not in str(stranger)


@pytest.mark.usefixtures("private_and_public")
def test_the_live_feed_replays_and_sends_only_what_the_key_may_read(agent):
    headers = key_headers(make_key("beta-watcher", agents=["beta"], scopes=["streams:read"])[1])

    async def watch() -> tuple[list[dict], list[dict]]:
        stranger = Watcher("types=signal.sent,approval.requested&since=0", headers)
        assert await stranger.connect()
        await stranger.until_ready()
        replayed = list(stranger.events)
        for signal_type, target in (("live-private", "gamma"), ("live-public", None)):
            body = {"signal_type": signal_type, "target_agent": target}
            await sync_to_async(agent.post)("/api/v1/signals", body, format="json")
        live = (await stranger.collect(len(replayed) + 1))[len(replayed) :]
        await stranger.communicator.disconnect()
        return replayed, live

    replayed, live = async_to_sync(watch)()
    assert signal_types(replayed) == ["all"] and approvals(replayed) == []
    assert signal_types(live) == ["live-public"]  # had the private one leaked, it would come first


def staff_reading(django_user_model, username: str, *scopes: str):
    """A staff member (password "pw") with the permissions behind `scopes` and no other."""
    from django.contrib.auth.models import Permission

    from core.scopes import permissions_for

    user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(codename__in={perm.split(".")[1] for scope in scopes for perm in permissions_for(scope)})
    )
    return user


@pytest.mark.usefixtures("private_and_public")
def test_on_the_real_server_a_staff_session_reads_private_events_only_with_the_permission_for_their_subject(
    server_env, django_user_model
):
    """Can view event stream shows the streams; a directed signal's payload and an approval
    request's context are the signals' and the requests' to show (Can view agent, Can view
    approval request), as the signals and approvals APIs ask: a staff session without them reads
    neither on the streams API, consume, nor the live feed's replay, and the public events still."""
    import httpx
    import websockets.sync.client as ws

    from tests.services import asgi_server
    from tests.test_scale_out import PLAIN_HTTP_COOKIES, log_in

    personas = {
        "watcher": ("streams:read",),
        "signals-watcher": ("streams:read", "coordination:read"),
        "approvals-watcher": ("streams:read", "approvals:read"),
        "every-watcher": ("streams:read", "coordination:read", "approvals:read"),
    }
    for name, scopes in personas.items():
        staff_reading(django_user_model, name, *scopes)
    seen = {}
    with asgi_server({**server_env, **PLAIN_HTTP_COOKIES}) as base:
        for name in personas:
            with httpx.Client(base_url=base, timeout=30) as browser:
                log_in(browser, name, "pw")
                recent = (
                    browser.get("/api/v1/streams/signal.sent").json() + browser.get("/api/v1/streams/approval.requested").json()
                )
                consumed = browser.get(
                    "/api/v1/streams/consume", params={"types": "signal.sent,approval.requested", "after": "0"}
                )
                session = {"Cookie": f"sessionid={browser.cookies['sessionid']}"}
                url = base.replace("http", "ws") + "/ws/live/?types=signal.sent,approval.requested&since=0"
                fed = []
                with ws.connect(url, origin=base, additional_headers=session, open_timeout=10) as feed:
                    while (message := json.loads(feed.recv(10)))["type"] == "events":
                        fed += message["events"]
                    assert message["type"] == "ready", message
            seen[name] = {
                how: (sorted(signal_types(found)), approvals(found))
                for how, found in (("recent", recent), ("consume", consumed.json()["events"]), ("feed", fed))
            }
            if name == "watcher":
                assert SECRET not in json.dumps(recent) + consumed.text + json.dumps(fed)
    expected = {
        "watcher": (["all"], []),
        "signals-watcher": (["all", "go"], []),
        "approvals-watcher": (["all"], ["alpha"]),
        "every-watcher": (["all", "go"], ["alpha"]),
    }
    assert seen == {name: dict.fromkeys(("recent", "consume", "feed"), found) for name, found in expected.items()}
