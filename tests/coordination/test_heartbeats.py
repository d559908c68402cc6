"""Heartbeats on the real Redis: live state, the registry row that follows it, the events."""

import time
from datetime import UTC, datetime, timedelta

import pytest

from coordination import heartbeats
from coordination.models import Agent
from core import streams

pytestmark = pytest.mark.django_db


def test_first_beat_registers_the_agent_and_status_reads_it_back(agent):
    beat = {"status": "working", "progress": 0.4, "current_task": "t1"}
    response = agent.post("/api/v1/agents/alpha/heartbeat", beat, format="json")
    assert response.status_code == 200, response.content
    row = Agent.objects.get(agent_id="alpha")
    assert row.status == "working" and row.last_seen_at is not None
    state = agent.get("/api/v1/agents/alpha").json()
    assert (state["status"], state["progress"], state["current_task"]) == ("working", 0.4, "t1")
    assert [e["event_type"] for e in streams.recent("agent.heartbeat", 10)] == ["agent.heartbeat"]


def test_start_beat_stop_and_the_lists(agent):
    started = agent.post(
        "/api/v1/agents/alpha/heartbeat/start",
        {"display_name": "Alpha", "metadata": {"v": 1}, "stale_after_seconds": 30},
        format="json",
    ).json()
    assert started["display_name"] == "Alpha" and started["metadata"] == {"v": 1} and started["stale_after_seconds"] == 30
    assert [a["agent_id"] for a in agent.get("/api/v1/agents/active").json()] == ["alpha"]
    assert agent.get("/api/v1/agents/stale").json() == []
    stopped = agent.post("/api/v1/agents/alpha/heartbeat/stop", {"final_status": "done"}, format="json").json()
    assert stopped["status"] == "done"
    assert agent.get("/api/v1/agents/active").json() == []
    assert agent.get("/api/v1/agents/alpha").json()["status"] == "done"
    assert Agent.objects.get(agent_id="alpha").stopped_at is not None
    assert [e["event_type"] for e in streams.recent("agent.started", 5)] == ["agent.started"]
    assert [e["data"]["status"] for e in streams.recent("agent.stopped", 5)] == ["done"]


def test_an_agent_silent_past_its_threshold_is_stale(agent):
    agent.post("/api/v1/agents/alpha/heartbeat/start", {"stale_after_seconds": 1}, format="json")
    time.sleep(1.2)
    assert [a["agent_id"] for a in agent.get("/api/v1/agents/stale").json()] == ["alpha"]
    assert agent.get("/api/v1/agents/active").json() == []
    assert [a["agent_id"] for a in agent.get("/api/v1/agents/active", {"threshold_seconds": 60}).json()] == ["alpha"]
    assert agent.get("/api/v1/agents/stale", {"threshold_seconds": "soon"}).status_code == 400


def test_plain_beats_write_no_registry_row_until_the_sync(agent):
    agent.post("/api/v1/agents/alpha/heartbeat", {"status": "working"}, format="json")
    first_seen = Agent.objects.get(agent_id="alpha").last_seen_at
    for _ in range(3):
        agent.post("/api/v1/agents/alpha/heartbeat", {"status": "working", "progress": 0.5}, format="json")
    assert Agent.objects.get(agent_id="alpha").last_seen_at == first_seen
    assert heartbeats.sync_registry() == 1
    assert Agent.objects.get(agent_id="alpha").last_seen_at > first_seen
    assert heartbeats.sync_registry() == 0  # nothing beat since


def test_the_sync_moves_last_seen_only_forward_and_only_for_registered_agents():
    t0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
    Agent.objects.bulk_create([
        Agent(agent_id="never-seen"),
        Agent(agent_id="behind", last_seen_at=t0),
        Agent(agent_id="ahead", last_seen_at=t0 + timedelta(seconds=10)),
        *(Agent(agent_id=f"many-{n}", last_seen_at=t0) for n in range(1200)),  # more than one UPDATE's worth
    ])  # fmt: skip
    later = t0 + timedelta(seconds=5, microseconds=250_000)
    last_seen = {"never-seen": later, "behind": later, "ahead": later, "unregistered": later}
    last_seen.update({f"many-{n}": t0 + timedelta(milliseconds=n) for n in range(1200)})

    assert Agent.objects.record_last_seen(last_seen) == 2 + 1199  # many-0's time is not later
    rows = dict(Agent.objects.values_list("agent_id", "last_seen_at"))
    assert (rows["never-seen"], rows["behind"], rows["ahead"]) == (later, later, t0 + timedelta(seconds=10))
    assert rows["many-1199"] == t0 + timedelta(milliseconds=1199) and rows["many-0"] == t0
    assert "unregistered" not in rows
    assert Agent.objects.record_last_seen(last_seen) == 0


def test_a_key_beats_only_as_its_agents_and_bad_input_is_refused(agent, anonymous):
    response = agent.post("/api/v1/agents/beta/heartbeat", {"status": "x"}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "agent_forbidden"
    assert anonymous.post("/api/v1/agents/alpha/heartbeat", {}, format="json").status_code == 401
    assert agent.post("/api/v1/agents/alpha/heartbeat", {"status": "x"}).status_code == 415
    response = agent.post("/api/v1/agents/alpha/heartbeat", {"progress": 101}, format="json")
    assert response.status_code == 400 and "progress" in response.json()["error"]["fields"]
    assert agent.post("/api/v1/agents/alpha/heartbeat", "{", content_type="application/json").status_code == 400
    assert agent.get("/api/v1/agents/alpha/heartbeat").status_code == 405
    assert agent.get("/api/v1/agents/nobody").status_code == 404
    assert not Agent.objects.filter(agent_id="beta").exists()


def test_staff_beat_with_a_session_only_with_the_csrf_token(staff):
    assert staff.post("/api/v1/agents/any/heartbeat", {}, format="json").json()["error"]["code"] == "csrf_failed"
    staff.get("/admin/")
    token = staff.cookies["csrftoken"].value
    assert staff.post("/api/v1/agents/any/heartbeat", {}, format="json", HTTP_X_CSRFTOKEN=token).status_code == 200


def test_live_state_expires_after_its_ttl(agent, settings):
    settings.AGENT_STATE_TTL = 1
    agent.post("/api/v1/agents/alpha/heartbeat", {"status": "working"}, format="json")
    assert agent.get("/api/v1/agents/alpha").status_code == 200
    time.sleep(1.2)
    assert agent.get("/api/v1/agents/alpha").status_code == 404
    assert agent.get("/api/v1/agents/stale").json() == []  # a forgotten agent is not listed
