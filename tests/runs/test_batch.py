import pytest

from runs.models import Run
from tests.runs.factories import run_payload

pytestmark = pytest.mark.django_db

URL = "/api/v1/runs/batch"


def test_a_batch_stores_every_valid_run(agent):
    runs = [run_payload() for _ in range(5)]
    response = agent.post(URL, runs, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["total"], body["inserted"], body["duplicates"], body["failed"]) == (5, 5, 0, 0)
    assert [r["status"] for r in body["results"]] == ["created"] * 5
    assert Run.objects.count() == 5


def test_partial_failure_is_a_200_with_the_rejects_in_errors_and_the_valid_runs_stored(agent):
    good = run_payload()
    bad = run_payload(items_failed=-3)
    foreign = run_payload(agent_name="beta")
    response = agent.post(URL, [good, bad, foreign, "not an object"], format="json")
    assert response.status_code == 200 and "Preference-Applied" not in response
    body = response.json()
    assert (body["total"], body["inserted"], body["failed"], len(body["errors"])) == (4, 1, 3, 3)
    results = body["results"]
    assert results[0] == {"index": 0, "event_id": good["event_id"], "status": "created"}
    assert results[1]["status"] == "rejected" and "items_failed" in results[1]["error"]["fields"]
    assert results[2]["status"] == "rejected" and results[2]["error"]["code"] == "agent_forbidden"
    assert results[3]["status"] == "rejected" and results[3]["event_id"] is None
    assert len(response.json()["errors"]) == 3
    assert list(Run.objects.values_list("event_id", flat=True)) == [good["event_id"]]


@pytest.mark.parametrize("prefer", ["multi-status", "respond-async, Multi-Status", "wait=5, multi-status; strict"])
def test_a_caller_that_prefers_multi_status_gets_a_207_when_some_items_are_rejected(agent, prefer):
    response = agent.post(URL, [run_payload(), run_payload(items_failed=-3)], format="json", headers={"Prefer": prefer})
    assert response.status_code == 207 and response["Preference-Applied"] == "multi-status"
    assert [r["status"] for r in response.json()["results"]] == ["created", "rejected"]
    clean = agent.post(URL, [run_payload()], format="json", headers={"Prefer": prefer})
    assert clean.status_code == 200 and clean["Preference-Applied"] == "multi-status"


def test_duplicates_within_and_across_batches_are_stored_once(agent):
    first = run_payload()
    agent.post(URL, [first], format="json")
    second = run_payload()
    body = agent.post(URL, {"runs": [first, second, second]}, format="json").json()
    assert [r["status"] for r in body["results"]] == ["duplicate", "created", "duplicate"]
    assert (body["inserted"], body["duplicates"]) == (1, 2)
    assert Run.objects.count() == 2


def test_a_batch_larger_than_the_limit_is_refused_whole(agent, settings):
    settings.BATCH_MAX_ITEMS = 3
    response = agent.post(URL, [run_payload() for _ in range(4)], format="json")
    assert response.status_code == 400
    assert "At most 3" in response.json()["error"]["fields"]["body"][0]
    assert not Run.objects.exists()


def test_a_body_that_is_not_a_list_is_a_400(agent):
    response = agent.post(URL, {"event_id": "x"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_a_thousand_runs_fit_in_one_batch(agent):
    response = agent.post(URL, [run_payload() for _ in range(1000)], format="json")
    assert response.status_code == 200
    assert Run.objects.count() == 1000


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_with_the_same_runs_store_and_claim_each_once():
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from runs import services

    runs = [run_payload() for _ in range(200)]

    def send(_):
        try:
            return services.ingest_runs([dict(run) for run in runs], lambda agent: True).body()
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        bodies = list(pool.map(send, range(4)))
    assert sum(body["inserted"] for body in bodies) == 200
    assert sum(body["duplicates"] for body in bodies) == 600
    assert Run.objects.count() == 200
