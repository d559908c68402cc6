import pytest

from runs.models import Run
from tests.runs.factories import run_payload

pytestmark = pytest.mark.django_db


@pytest.fixture
def stored(agent) -> dict:
    payload = run_payload(metrics_json={"a": 1}, error_summary="boom")
    agent.post("/api/v1/runs", payload, format="json")
    return payload


def url(payload: dict) -> str:
    return f"/api/v1/runs/{payload['event_id']}"


def snapshot(payload: dict) -> dict:
    return Run.objects.filter(event_id=payload["event_id"]).values().get()


def test_patch_updates_the_editable_fields_and_says_which(agent, stored):
    response = agent.patch(
        url(stored),
        {
            "status": "success",
            "end_time": "2026-01-01T00:00:00Z",
            "items_succeeded": 4,
            "metrics_json": {"b": 2},
            "error_summary": None,
        },
        format="json",
    )
    assert response.status_code == 200
    assert response.json() == {
        "event_id": stored["event_id"],
        "updated": True,
        "fields_updated": ["status", "end_time", "items_succeeded", "error_summary", "metrics_json"],
    }
    run = Run.objects.get(event_id=stored["event_id"])
    assert (run.status, run.items_succeeded, run.metrics_json, run.error_summary) == ("success", 4, {"b": 2}, "")


@pytest.mark.parametrize(
    "body",
    [
        {"status": "done"},
        {"items_failed": -1},
        {"duration_ms": -5},
        {"error_summary": "x" * 501},
        {"error_details": "x" * 5001},
        {"output_summary": "x" * 1001},
        {"context_json": "not json"},
        {"end_time": "soon"},
        {"status": None},
        {"agent_name": "beta"},
        {"items_discovered": 3},
        {"status": "success", "event_id": "other"},
    ],
)
def test_a_rejected_patch_changes_nothing(agent, stored, body):
    before = snapshot(stored)
    response = agent.patch(url(stored), body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert snapshot(stored) == before


def test_an_empty_patch_is_a_400(agent, stored):
    response = agent.patch(url(stored), {}, format="json")
    assert response.status_code == 400
    assert "No fields" in response.json()["error"]["fields"]["body"][0]


def test_patch_of_an_unknown_run_is_a_404(agent):
    assert agent.patch("/api/v1/runs/missing", {"status": "success"}, format="json").status_code == 404


def test_associate_commit_links_the_commit(agent, stored):
    response = agent.post(
        f"{url(stored)}/associate-commit",
        {"commit_hash": "ABCDEF1234567", "commit_source": "llm", "commit_author": "Claude <noreply@anthropic.com>"},
        format="json",
    )
    assert response.status_code == 200
    assert response.json() == {
        "status": "success",
        "event_id": stored["event_id"],
        "run_id": stored["run_id"],
        "commit_hash": "abcdef1234567",
    }
    run = Run.objects.get(event_id=stored["event_id"])
    assert (run.git_commit_hash, run.git_commit_source) == ("abcdef1234567", "llm")


@pytest.mark.parametrize(
    "body",
    [
        {"commit_hash": "abc", "commit_source": "llm"},
        {"commit_hash": "zzzzzzzz", "commit_source": "ci"},
        {"commit_hash": "abcdef12", "commit_source": "bot"},
    ],
)
def test_bad_commits_are_refused(agent, stored, body):
    assert agent.post(f"{url(stored)}/associate-commit", body, format="json").status_code == 400
    assert Run.objects.get(event_id=stored["event_id"]).git_commit_hash == ""


def test_ending_a_run_derives_its_duration_unless_given(agent):
    payload = run_payload(start_time="2026-01-01T10:00:00Z")
    agent.post("/api/v1/runs", payload, format="json")
    agent.patch(url(payload), {"status": "success", "end_time": "2026-01-01T10:00:02.5Z"}, format="json")
    assert Run.objects.get(event_id=payload["event_id"]).duration_ms == 2500
    agent.patch(url(payload), {"end_time": "2026-01-01T10:00:04Z", "duration_ms": 7}, format="json")
    assert Run.objects.get(event_id=payload["event_id"]).duration_ms == 7


def test_a_patch_sets_nullable_fields_back_to_null_and_moves_updated_at(agent, stored):
    agent.patch(url(stored), {"end_time": "2026-01-01T00:00:00Z", "context_json": {"k": 1}}, format="json")
    before = snapshot(stored)
    response = agent.patch(url(stored), {"end_time": None, "context_json": None, "metrics_json": None}, format="json")
    assert response.status_code == 200 and response.json()["fields_updated"] == ["end_time", "metrics_json", "context_json"]
    after = snapshot(stored)
    assert (after["end_time"], after["metrics_json"], after["context_json"]) == (None, None, None)
    assert after["updated_at"] > before["updated_at"]
    assert {
        name: value for name, value in after.items() if name not in ("end_time", "metrics_json", "context_json", "updated_at")
    } == {name: value for name, value in before.items() if name not in ("end_time", "metrics_json", "context_json", "updated_at")}
