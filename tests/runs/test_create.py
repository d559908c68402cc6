import pytest

from runs.models import Run
from tests.runs.factories import run_payload

pytestmark = pytest.mark.django_db

URL = "/api/v1/runs"


def test_it_stores_a_run_with_every_field(agent):
    payload = run_payload(
        status="success",
        end_time="2026-01-01T10:00:05Z",
        duration_ms=5000,
        items_discovered=10,
        items_succeeded=8,
        items_failed=1,
        items_skipped=1,
        input_summary="data.csv",
        output_summary="8 translated",
        error_summary="1 failed",
        metrics_json={"tokens": 1200},
        context_json={"lang": "de"},
        insight_id="ins-1",
        product="docs",
        platform="linux",
        agent_owner="team-a",
        host="box-1",
        git_repo="https://github.com/acme/site.git",
        git_branch="main",
        git_commit_hash="a1b2c3d4",
        git_commit_source="llm",
        git_commit_author="Bot <bot@example.com>",
    )
    response = agent.post(URL, payload, format="json")
    assert response.status_code == 201, response.json()
    assert response.json() == {"status": "created", "event_id": payload["event_id"], "run_id": payload["run_id"]}
    run = Run.objects.get(event_id=payload["event_id"])
    assert run.items_succeeded == 8 and run.metrics_json == {"tokens": 1200} and run.git_commit_source == "llm"
    body = agent.get(f"{URL}/{payload['event_id']}").json()
    assert body["commit_url"] == "https://github.com/acme/site/commit/a1b2c3d4"
    assert body["end_time"] == "2026-01-01T10:00:05Z"
    assert body["status"] == "success"


def test_the_same_event_id_twice_stores_one_run(agent):
    payload = run_payload()
    assert agent.post(URL, payload, format="json").status_code == 201
    again = agent.post(URL, {**payload, "status": "failed"}, format="json")
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert Run.objects.filter(event_id=payload["event_id"]).count() == 1
    assert Run.objects.get(event_id=payload["event_id"]).status == "running"


def test_legacy_status_aliases_are_stored_canonical(agent):
    payload = run_payload(status="failure")
    agent.post(URL, payload, format="json")
    assert Run.objects.get(event_id=payload["event_id"]).status == "failed"


def test_metrics_json_may_be_a_string_holding_an_object(agent):
    payload = run_payload(metrics_json='{"a": 1}')
    assert agent.post(URL, payload, format="json").status_code == 201
    assert Run.objects.get().metrics_json == {"a": 1}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"items_failed": -1}, "items_failed"),
        ({"status": "exploded"}, "status"),
        ({"start_time": "yesterday"}, "start_time"),
        ({"error_summary": "x" * 501}, "error_summary"),
        ({"agent_name": ""}, "agent_name"),
        ({"surprise": 1}, "surprise"),
        ({"metrics_json": [1, 2]}, "metrics_json"),
        ({"git_commit_source": "robot"}, "git_commit_source"),
        ({"items_succeeded": "many"}, "items_succeeded"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(agent, change, field):
    response = agent.post(URL, run_payload(**change), format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"]
    assert not Run.objects.exists()


def test_a_missing_required_field_is_named(agent):
    payload = run_payload()
    del payload["job_type"]
    response = agent.post(URL, payload, format="json")
    assert response.status_code == 400
    assert "job_type" in response.json()["error"]["fields"]


def test_malformed_json_is_a_400(agent):
    response = agent.post(URL, '{"event_id": ', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_a_json_body_that_is_not_an_object_is_a_400(agent):
    response = agent.post(URL, [1, 2], format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_an_oversize_body_is_a_413(agent, settings):
    response = agent.post(URL, run_payload(input_summary="x" * 300_000), format="json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert not Run.objects.exists()


def test_other_content_types_are_a_415(agent):
    response = agent.post(URL, "event_id=1", content_type="text/plain")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_a_finished_run_without_a_duration_gets_one_from_its_times(agent):
    payload = run_payload(start_time="2026-01-01T10:00:00Z", end_time="2026-01-01T10:01:00Z", status="success")
    agent.post(URL, payload, format="json")
    assert Run.objects.get().duration_ms == 60_000
