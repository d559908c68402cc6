"""POST /api/v1/ingest: the SDK's ordered, mixed batches."""

import pytest

from runs.models import Run, RunEvent
from tests.runs.factories import run_payload

pytestmark = pytest.mark.django_db

URL = "/api/v1/ingest"


def test_a_run_its_events_its_end_and_its_commit_in_one_batch(agent):
    run = run_payload(start_time="2026-01-01T10:00:00Z")
    items = [
        {"kind": "run", **run},
        {"kind": "event", "event_id": "e1", "run_event_id": run["event_id"], "event_type": "start"},
        {"kind": "event", "event_id": "e2", "run_event_id": run["event_id"], "event_type": "step"},
        {
            "kind": "end",
            "event_id": run["event_id"],
            "status": "success",
            "end_time": "2026-01-01T10:00:03Z",
            "items_discovered": 10,
            "items_succeeded": 9,
            "product": "docs",
        },
        {"kind": "commit", "event_id": run["event_id"], "commit_hash": "abcdef1", "commit_source": "ci"},
    ]
    response = agent.post(URL, {"items": items}, format="json")
    assert response.status_code == 200, response.json()
    assert [r["status"] for r in response.json()["results"]] == ["created", "created", "created", "updated", "updated"]
    assert [r["index"] for r in response.json()["results"]] == [0, 1, 2, 3, 4]
    stored = Run.objects.get(event_id=run["event_id"])
    assert (stored.status, stored.items_discovered, stored.duration_ms, stored.product) == ("success", 10, 3000, "docs")
    assert stored.git_commit_hash == "abcdef1"
    assert RunEvent.objects.filter(run=stored).count() == 2


def test_replaying_a_batch_changes_nothing(agent):
    run = run_payload()
    items = [
        {"kind": "run", **run},
        {"kind": "event", "event_id": "e1", "run_event_id": run["event_id"], "event_type": "step"},
        {"kind": "end", "event_id": run["event_id"], "status": "failed", "error_summary": "boom"},
    ]
    agent.post(URL, items, format="json")
    again = agent.post(URL, items, format="json").json()
    assert [r["status"] for r in again["results"]] == ["duplicate", "duplicate", "duplicate"]  # the end changed nothing
    assert Run.objects.count() == 1 and RunEvent.objects.count() == 1
    assert Run.objects.get().error_summary == "boom"


def test_bad_items_are_rejected_one_by_one(agent, other_agent):
    foreign = Run.objects.create(**run_payload(agent_name="beta"))
    mine = run_payload()
    items = [
        {"kind": "run", **mine},
        {"kind": "telepathy"},
        "not an object",
        {"kind": {"run": True}},  # not a string (schemathesis found this was a 500)
        {"kind": ["run"]},
        {"kind": "end", "event_id": mine["event_id"], "items_failed": -1},
        {"kind": "end", "event_id": "missing", "status": "success"},
        {"kind": "end", "event_id": foreign.event_id, "status": "success"},
        {"kind": "end", "event_id": mine["event_id"], "agent_name": "beta"},
        {"kind": "event", "run_event_id": mine["event_id"], "event_type": "ok"},
    ]
    response = agent.post(URL, items, format="json", headers={"Prefer": "multi-status"})  # as the SDK sends it
    assert response.status_code == 207
    results = response.json()["results"]
    assert [r["status"] for r in results] == [
        "created",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "created",
    ]
    assert [r.get("error", {}).get("code") for r in results[1:9]] == [
        "invalid_kind",
        "invalid_kind",
        "invalid_kind",
        "invalid_kind",
        "invalid",
        "run_not_found",
        "agent_forbidden",
        "invalid",
    ]
    assert Run.objects.get(pk=foreign.pk).status == "running"
    assert Run.objects.get(event_id=mine["event_id"]).agent_name == "alpha"
