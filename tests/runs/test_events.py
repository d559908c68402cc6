import pytest

from runs.models import Run, RunEvent
from tests.runs.factories import run_payload

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(agent) -> dict:
    payload = run_payload()
    agent.post("/api/v1/runs", payload, format="json")
    return payload


def test_one_event_and_a_list_of_events_are_recorded_in_order(agent, run):
    url = f"/api/v1/runs/{run['event_id']}/events"
    assert agent.post(url, {"event_type": "start", "payload": {"input": "data.csv"}}, format="json").status_code == 200
    body = agent.post(
        url,
        [
            {"event_id": "e2", "event_type": "checkpoint", "timestamp": "2099-01-01T00:00:01Z", "payload": {"step": 1}},
            {"event_id": "e3", "event_type": "checkpoint", "timestamp": "2099-01-01T00:00:02Z", "payload": {"step": 2}},
        ],
        format="json",
    ).json()
    assert body["inserted"] == 2
    listed = agent.get(url).json()
    assert [e["event_type"] for e in listed] == ["start", "checkpoint", "checkpoint"]
    assert listed[2]["payload"] == {"step": 2}


def test_events_are_idempotent_on_event_id(agent, run):
    url = f"/api/v1/runs/{run['event_id']}/events"
    event = {"event_id": "same", "event_type": "tick"}
    agent.post(url, event, format="json")
    body = agent.post(url, [event], format="json").json()
    assert body["results"][0]["status"] == "duplicate"
    assert RunEvent.objects.count() == 1


def test_the_events_batch_spans_runs_and_reports_unknown_runs(agent, run):
    other = run_payload()
    agent.post("/api/v1/runs", other, format="json")
    items = [
        {"run_event_id": run["event_id"], "event_type": "a"},
        {"run_event_id": other["event_id"], "event_type": "b"},
        {"run_event_id": "missing", "event_type": "c"},
        {"event_type": "no run"},
    ]
    response = agent.post("/api/v1/events/batch", items, format="json")
    assert response.status_code == 200 and response.json()["failed"] == 2
    assert [r["status"] for r in response.json()["results"]] == ["created", "created", "rejected", "rejected"]
    assert response.json()["results"][2]["error"]["code"] == "run_not_found"
    assert RunEvent.objects.count() == 2


def test_a_key_cannot_add_events_to_another_agents_run(agent, other_agent):
    foreign = Run.objects.create(**run_payload(agent_name="beta"))
    response = agent.post(f"/api/v1/runs/{foreign.event_id}/events", {"event_type": "x"}, format="json")
    assert response.status_code == 403
    batch = agent.post("/api/v1/events/batch", [{"run_event_id": foreign.event_id, "event_type": "x"}], format="json")
    assert batch.json()["results"][0]["error"]["code"] == "agent_forbidden"
    assert not RunEvent.objects.exists()
