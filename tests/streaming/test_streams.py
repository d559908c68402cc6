"""The streams API on the real Redis."""

import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.test import AsyncClient

from core import events
from tests.conftest import key_client, make_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def reader_key() -> str:
    return make_key("watcher", scopes=["streams:read"])[1]


def test_publish_then_read_back_recent_events_oldest_first(agent):
    ids = [agent.post("/api/v1/streams/deploys", {"data": {"n": n}}, format="json").json()["event_id"] for n in range(5)]
    recent = agent.get("/api/v1/streams/deploys", {"count": 3}).json()
    assert [e["event_id"] for e in recent] == ids[2:]
    assert recent[-1]["data"] == {"n": 4} and recent[-1]["source"] == "alpha" and recent[-1]["event_type"] == "deploys"
    window = agent.get("/api/v1/streams/deploys", {"start": ids[1], "end": ids[2]}).json()
    assert [e["event_id"] for e in window] == ids[1:3]


def test_info_trim_and_delete(agent, staff):
    for n in range(10):
        agent.post("/api/v1/streams/deploys", {"data": {"n": n}}, format="json")
    info = agent.get("/api/v1/streams/deploys/info").json()
    assert info["length"] == 10 and info["first_event_id"] < info["last_event_id"]
    assert agent.post("/api/v1/streams/deploys/trim", {"max_length": 3}, format="json").status_code == 403
    assert agent.get("/api/v1/streams/deploys/info").json()["length"] == 10
    token = _csrf(staff)
    assert staff.post("/api/v1/streams/deploys/trim", {"max_length": 3}, format="json", HTTP_X_CSRFTOKEN=token).json() == {
        "removed": 7
    }
    assert agent.get("/api/v1/streams/deploys/info").json()["length"] == 3
    assert staff.delete("/api/v1/streams/deploys", HTTP_X_CSRFTOKEN=token).json() == {"deleted": True}
    assert agent.get("/api/v1/streams/deploys/info").json()["length"] == 0


def _csrf(client) -> str:
    client.get("/admin/")
    return client.cookies["csrftoken"].value


def test_agents_may_not_publish_the_servers_event_types_or_bad_input(agent, reader_key):
    response = agent.post("/api/v1/streams/run.ended", {"data": {}}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "reserved_event_type"
    assert agent.post("/api/v1/streams/deploys", {"data": [1]}, format="json").status_code == 400
    assert agent.post("/api/v1/streams/deploys", {"extra": 1}, format="json").status_code == 400
    assert agent.get("/api/v1/streams/deploys", {"count": 0}).status_code == 400
    assert key_client(reader_key).post("/api/v1/streams/deploys", {"data": {}}, format="json").status_code == 403
    assert agent.get("/api/v1/streams/deploys").json() == []  # nothing refused was published
    assert agent.get("/api/v1/streams/run.ended").json() == []


def consume(query: str, headers: dict | None = None, publish_after: float | None = None):
    """GET /api/v1/streams/consume through the ASGI handler; optionally publish while it waits."""

    async def run():
        client = AsyncClient()
        request = asyncio.ensure_future(client.get(f"/api/v1/streams/consume?{query}", headers=headers or {}))
        if publish_after is not None:
            await asyncio.sleep(publish_after)
            await sync_to_async(events.publish_now)([events.Event("deploys", {"late": True})])
        return await request

    return async_to_sync(run)()


def test_a_blocking_consume_wakes_when_an_event_arrives(reader_key):
    response = consume("types=deploys&block_ms=20000", {"Authorization": f"Api-Key {reader_key}"}, publish_after=0.3)
    assert response.status_code == 200
    body = response.json()
    assert [e["data"] for e in body["events"]] == [{"late": True}]
    assert body["after"]["deploys"] == body["events"][0]["event_id"]


def test_a_blocking_consume_times_out_empty(reader_key):
    body = consume("types=deploys,other&block_ms=200", {"Authorization": f"Api-Key {reader_key}"}).json()
    assert body == {"events": [], "after": {"deploys": "$", "other": "$"}}


def test_a_consume_may_block_longer_than_the_redis_clients_default_socket_timeout(reader_key):
    response = consume("types=deploys&block_ms=6000", {"Authorization": f"Api-Key {reader_key}"})
    assert response.status_code == 200 and response.json()["events"] == []


def test_consume_resumes_after_the_last_id_without_gaps_or_repeats(reader_key):
    ids = events.publish_now(events.Event("deploys", {"n": n}) for n in range(5))
    headers = {"Authorization": f"Api-Key {reader_key}"}
    first = consume("types=deploys&after=0-0&count=2", headers).json()
    assert [e["data"]["n"] for e in first["events"]] == [0, 1]
    rest = consume(f"types=deploys&after={first['after']['deploys']}&count=10", headers).json()
    assert [e["event_id"] for e in rest["events"]] == ids[2:]


@pytest.mark.parametrize(
    ("query", "headers", "status"),
    [
        ("types=deploys", {}, 401),
        ("types=deploys", {"Authorization": "Api-Key nope.nope"}, 401),
        ("types=", None, 400),
        ("types=deploys&block_ms=999999", None, 400),
        ("types=a,b,c&after=1-0,2-0", None, 400),
    ],
)
def test_consume_refuses_strangers_and_bad_parameters(reader_key, query, headers, status):
    response = consume(query, {"Authorization": f"Api-Key {reader_key}"} if headers is None else headers)
    assert response.status_code == status
    assert "code" in response.json()["error"]


def test_consume_needs_the_read_scope():
    writer = make_key("writer", scopes=["streams:write"])[1]
    response = consume("types=deploys", {"Authorization": f"Api-Key {writer}"})
    assert response.status_code == 403 and response.json()["error"]["code"] == "missing_scope"
