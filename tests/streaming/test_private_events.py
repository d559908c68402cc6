"""Events about one agent's private business (a directed signal, an approval request) reach only
keys that may act as that agent, and staff: on the streams API and on the live feed, as the
signals and approvals APIs let only them read their subjects."""

from __future__ import annotations

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
