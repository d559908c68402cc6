from datetime import timedelta

import pytest
from django.utils import timezone

from runs.models import Run
from tests.runs.factories import run_payload

pytestmark = pytest.mark.django_db

URL = "/api/v1/runs"


def store(agent, **fields) -> dict:
    payload = run_payload(**fields)
    assert agent.post(URL, payload, format="json").status_code == 201
    return payload


def event_ids(response) -> list[str]:
    assert response.status_code == 200, response.json()
    return [run["event_id"] for run in response.json()]


def test_runs_are_listed_newest_first_as_a_bare_list(agent):
    old = store(agent, created_at=(timezone.now() - timedelta(hours=2)).isoformat())
    new = store(agent)
    assert event_ids(agent.get(URL)) == [new["event_id"], old["event_id"]]


def test_filters_by_agent_status_and_job_type(agent, staff):
    mine = store(agent, status="running", job_type="crawl")
    store(agent, status="success", job_type="crawl")
    store(agent, status="running", job_type="index")
    Run.objects.create(**{**run_payload(agent_name="beta", job_type="crawl"), "status": "running"})
    assert event_ids(agent.get(URL, {"agent_name": "alpha", "status": "running", "job_type": "crawl"})) == [mine["event_id"]]
    assert len(event_ids(agent.get(URL, {"job_type": "crawl", "status": "running"}))) == 2


def test_status_filter_accepts_legacy_aliases(agent):
    failed = store(agent, status="failed")
    store(agent, status="success")
    assert event_ids(agent.get(URL, {"status": "failure"})) == [failed["event_id"]]


def test_created_before_and_after_select_a_window(agent):
    now = timezone.now()
    stale = store(agent, created_at=(now - timedelta(hours=3)).isoformat())
    store(agent, created_at=(now - timedelta(minutes=5)).isoformat())
    cutoff = (now - timedelta(hours=1)).isoformat()
    assert event_ids(agent.get(URL, {"created_before": cutoff})) == [stale["event_id"]]
    assert stale["event_id"] not in event_ids(agent.get(URL, {"created_after": cutoff}))


@pytest.mark.parametrize(
    "params",
    [
        {"status": "exploded"},
        {"created_before": "last tuesday"},
        {"limit": "0"},
        {"limit": "1001"},
        {"offset": "-1"},
        {"limit": "x"},
    ],
)
def test_bad_query_parameters_are_a_400(agent, params):
    response = agent.get(URL, params)
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == set(params)


def test_pages_follow_the_link_header(agent):
    stored = [store(agent, created_at=(timezone.now() - timedelta(seconds=i)).isoformat())["event_id"] for i in range(5)]
    first = agent.get(URL, {"limit": 2})
    assert event_ids(first) == stored[:2]
    next_url = first.headers["Link"].split(";")[0].strip("<>")
    second = agent.get(next_url)
    assert event_ids(second) == stored[2:4]
    last = agent.get(URL, {"limit": 2, "offset": 4})
    assert event_ids(last) == stored[4:] and "Link" not in last.headers


def test_the_list_costs_a_fixed_number_of_queries(agent, django_assert_max_num_queries):
    for _ in range(30):
        store(agent)
    with django_assert_max_num_queries(3):  # the key, its last-use stamp at most, the page
        assert len(event_ids(agent.get(URL))) == 30


def test_an_unknown_run_is_a_json_404(agent):
    response = agent.get(f"{URL}/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
