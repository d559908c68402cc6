"""Agents cannot pass for the server on the event bus, tried on the real server: the server's event
types (`alert.*` too, in any case) are refused to them and nothing is published; an event's
source is the key that published it, whatever the body says; and an alert about an approval
request reaches only the keys of that request's agent (and staff), on the streams API and in the
live feed's replay, as the approval's own events do."""

from __future__ import annotations

import json

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from alerts import services as alerts
from alerts.models import AlertRule
from core import events, streams
from core.redis import get_redis
from tests.conftest import make_key

pytestmark = pytest.mark.django_db(transaction=True)

FORGED = ["alert.opened", "alert.closed", "ALERT.opened", "Alert.resolved", "run.ended", "agent.stale", "approval.decided"]


def key(name: str, agents: list[str] | None = None, scopes: list[str] | None = None) -> dict[str, str]:
    return {"Authorization": f"Api-Key {make_key(name, agents=agents, scopes=scopes)[1]}"}


def test_an_agent_cannot_publish_the_servers_event_types(live_asgi):
    with httpx.Client(base_url=live_asgi, headers=key("alpha")) as api:
        for event_type in FORGED:
            forged = api.post(f"/api/v1/streams/{event_type}", json={"data": {"summary": "all clear"}, "source": "server"})
            assert forged.status_code == 403, event_type
            assert forged.json()["error"]["code"] == "reserved_event_type"
        assert api.get("/api/v1/streams").json()["event_types"] == []
    assert not any(get_redis().exists(streams.stream_key(event_type)) for event_type in FORGED)
    assert events.published_counts() == {}


def test_every_type_the_server_publishes_is_reserved():
    assert all(events.reserved(event_type) for event_type in events.SERVER_EVENT_TYPES)
    assert not events.reserved("deploys") and not events.reserved("alerting.custom")


def test_an_events_source_is_the_key_that_published_it_whatever_the_body_says(live_asgi):
    with httpx.Client(base_url=live_asgi, headers=key("alpha")) as api:
        assert api.post("/api/v1/streams/deploys", json={"data": {"n": 1}, "source": "server"}).status_code == 201
        assert api.post("/api/v1/streams/deploys", json={"data": {"n": 2}}).status_code == 201
        recent = api.get("/api/v1/streams/deploys").json()
    assert [(event["data"]["n"], event["source"]) for event in recent] == [(1, "alpha"), (2, "alpha")]


@pytest.fixture
def approval_alert(live_asgi) -> str:
    """alpha asks for an approval and an "approval pending" rule opens an alert about it; the
    request's id."""
    with httpx.Client(base_url=live_asgi, headers=key("alpha")) as api:
        asked = api.post("/api/v1/approvals", json={"approval_type": "deploy"})
    assert asked.status_code == 201, asked.text
    AlertRule.objects.create(name="waiting", kind=AlertRule.Kind.APPROVAL_PENDING, threshold=0)
    assert alerts.evaluate_all() == {"opened": 1, "closed": 0}
    return asked.json()["request_id"]


def test_an_alert_about_an_approval_request_reaches_only_its_agents_keys(live_asgi, approval_alert):
    readers = {agent: key(f"{agent}-reader", agents=[agent], scopes=["streams:read"]) for agent in ("alpha", "beta")}

    def read(headers: dict[str, str]) -> tuple[list[dict], list[dict]]:
        with httpx.Client(base_url=live_asgi, headers=headers) as api:
            recent = api.get("/api/v1/streams/alert.opened").json()
            consumed = api.get("/api/v1/streams/consume", params={"types": "alert.opened", "after": "0"}).json()
        return recent, consumed["events"]

    def replayed(headers: dict[str, str]) -> list[dict]:
        url = live_asgi.replace("http", "ws", 1) + "/ws/live/?types=alert.opened&since=0"
        found = []
        with ws_connect(url, additional_headers=headers, open_timeout=10) as feed:
            while (message := json.loads(feed.recv(10)))["type"] != "ready":
                found += message["events"]
        return found

    recent, consumed = read(readers["alpha"])
    assert [event["data"]["details"]["request_id"] for event in recent] == [approval_alert] and consumed == recent
    assert [event["data"]["subject"] for event in replayed(readers["alpha"])] == [f"approval:{approval_alert}"]
    assert read(readers["beta"]) == ([], [])
    assert replayed(readers["beta"]) == []
