"""Runs announce themselves on the event bus: run.started, run.ended."""

import json

import pytest

from core import streams
from core.redis import get_redis
from runs.models import Run
from tests.runs.factories import run_payload

pytestmark = pytest.mark.django_db(transaction=True)


def published(event_type: str) -> list[dict]:
    return [json.loads(fields[b"data"]) for _, fields in get_redis().xrange(streams.stream_key(event_type))]


def test_a_new_run_is_announced_once(agent):
    payload = run_payload()
    agent.post("/api/v1/runs", payload, format="json")
    agent.post("/api/v1/runs", payload, format="json")  # the duplicate announces nothing
    (started,) = published("run.started")
    assert (started["event_id"], started["agent_name"], started["status"]) == (payload["event_id"], "alpha", "running")
    assert "T" in started["start_time"]  # ISO 8601
    assert published("run.ended") == []


def test_a_batch_announces_its_new_runs_and_finished_ones_as_ended(agent):
    old = run_payload()
    agent.post("/api/v1/runs", old, format="json")
    new = run_payload()
    done = run_payload(status="success")
    agent.post("/api/v1/runs/batch", [old, new, done, run_payload(items_failed=-1)], format="json")
    assert [e["event_id"] for e in published("run.started")] == [old["event_id"], new["event_id"]]
    assert [e["event_id"] for e in published("run.ended")] == [done["event_id"]]


def test_ending_a_run_announces_it_once(agent):
    payload = run_payload()
    agent.post("/api/v1/runs", payload, format="json")
    end = {"kind": "end", "event_id": payload["event_id"], "status": "failed", "error_summary": "boom"}
    agent.post("/api/v1/ingest", [end], format="json")
    agent.patch(f"/api/v1/runs/{payload['event_id']}", {"output_summary": "later fix"}, format="json")
    (ended,) = published("run.ended")
    assert (ended["status"], ended["error_summary"]) == ("failed", "boom")


def test_cancelling_in_the_admin_announces_the_runs_it_cancelled(admin_client):
    running = Run.objects.create(**run_payload())
    finished = Run.objects.create(**{**run_payload(), "status": "success"})
    admin_client.post("/admin/runs/run/", {"action": "mark_cancelled", "_selected_action": [running.pk, finished.pk]})
    assert [(e["event_id"], e["status"]) for e in published("run.ended")] == [(running.event_id, "cancelled")]
