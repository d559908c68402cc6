"""The stale sweep: one transition however many sweep at once, recovery, agents Redis forgot,
abandoned runs, and the real Celery worker and beat running it on schedule."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from coordination import heartbeats
from coordination.models import Agent
from core import streams
from runs import services
from runs.models import Run, RunStatus
from tests.conftest import at_once, go_silent, key_client, make_key
from tests.runs.factories import make_run
from tests.services import celery_processes


@pytest.mark.django_db(transaction=True)
def test_concurrent_sweeps_record_one_transition(agent):
    go_silent(agent)
    results = at_once(heartbeats.sweep)
    assert sorted(results) == [[]] * 5 + [["alpha"]]
    assert [e["data"]["agent_id"] for e in streams.recent("agent.stale", 10)] == ["alpha"]
    assert Agent.objects.get(agent_id="alpha").stale_since is not None
    assert agent.get("/api/v1/agents/alpha").json()["stale"] is True
    assert heartbeats.sweep() == []  # a later sweep records nothing new


@pytest.mark.django_db
def test_a_beat_while_the_sweep_runs_keeps_the_agent_live(agent):
    """The sweep read the agent as silent, then it beat: no stale mark, no event, nothing to recover."""
    go_silent(agent)
    [silent] = [h for h in heartbeats.stale() if h.agent_id == "alpha"]
    assert agent.post("/api/v1/agents/alpha/heartbeat", {}, format="json").status_code == 200
    assert heartbeats._mark_silent_stale(silent) is False
    assert Agent.objects.get(agent_id="alpha").stale_since is None
    assert agent.get("/api/v1/agents/alpha").json()["stale"] is False
    assert streams.recent("agent.stale", 10) == []
    agent.post("/api/v1/agents/alpha/heartbeat", {}, format="json")
    assert streams.recent("agent.recovered", 10) == []


@pytest.mark.django_db
def test_a_stale_agent_that_beats_again_recovers_once(agent, django_capture_on_commit_callbacks):
    go_silent(agent)
    with django_capture_on_commit_callbacks(execute=True):
        assert heartbeats.sweep() == ["alpha"]
    assert [e["data"]["agent_id"] for e in streams.recent("agent.stale", 10)] == ["alpha"]
    for _ in range(2):
        agent.post("/api/v1/agents/alpha/heartbeat", {"status": "running"}, format="json")
    assert Agent.objects.get(agent_id="alpha").stale_since is None
    assert agent.get("/api/v1/agents/alpha").json()["stale"] is False
    assert [e["data"]["agent_id"] for e in streams.recent("agent.recovered", 10)] == ["alpha"]
    assert heartbeats.sweep() == []


@pytest.mark.django_db
def test_a_stopped_agent_is_never_stale(agent):
    agent.post("/api/v1/agents/alpha/heartbeat/start", {"stale_after_seconds": 1}, format="json")
    agent.post("/api/v1/agents/alpha/heartbeat/stop", {}, format="json")
    time.sleep(1.2)
    assert heartbeats.sweep() == []


@pytest.mark.django_db
def test_an_agent_whose_live_state_redis_lost_is_judged_by_its_row(django_capture_on_commit_callbacks):
    Agent.objects.create(agent_id="ghost", last_seen_at=timezone.now() - timedelta(seconds=120))
    Agent.objects.create(agent_id="fresh", last_seen_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        assert heartbeats.sweep() == ["ghost"]
    assert [e["data"]["agent_id"] for e in streams.recent("agent.stale", 10)] == ["ghost"]


@pytest.mark.django_db
def test_runs_of_an_agent_stale_past_the_grace_time_out(django_capture_on_commit_callbacks):
    now = timezone.now()
    Agent.objects.create(agent_id="gone", stale_since=now - timedelta(minutes=10))
    Agent.objects.create(agent_id="blip", stale_since=now - timedelta(seconds=30))
    abandoned = make_run(agent_name="gone", created_at=now - timedelta(minutes=20))
    later = make_run(agent_name="gone", created_at=now - timedelta(minutes=5))  # started after it went stale
    finished = make_run(agent_name="gone", created_at=now - timedelta(minutes=20), status=RunStatus.SUCCESS)
    recent = make_run(agent_name="blip", created_at=now - timedelta(minutes=20))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.time_out_abandoned_runs(grace_seconds=300) == 1
    statuses = {run.pk: run.status for run in Run.objects.all()}
    assert statuses == {
        abandoned.pk: RunStatus.TIMEOUT,
        later.pk: RunStatus.RUNNING,
        finished.pk: RunStatus.SUCCESS,
        recent.pk: RunStatus.RUNNING,
    }
    assert "heartbeats" in Run.objects.get(pk=abandoned.pk).error_summary
    assert [e["data"]["status"] for e in streams.recent("run.ended", 10)] == ["timeout"]
    assert services.time_out_abandoned_runs(grace_seconds=300) == 0


def wait_for(condition, seconds: float):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.2)


def test_the_worker_and_beat_sweep_and_sync_the_registry(server_env):
    agent = key_client(make_key("alpha")[1])
    env = {**server_env, "STALE_SWEEP_SECONDS": "1", "REGISTRY_SYNC_SECONDS": "1"}
    with celery_processes(env):
        agent.post("/api/v1/agents/alpha/heartbeat/start", {"stale_after_seconds": 2}, format="json")
        first_seen = Agent.objects.get(agent_id="alpha").last_seen_at
        agent.post("/api/v1/agents/alpha/heartbeat", {"status": "running"}, format="json")
        wait_for(lambda: Agent.objects.get(agent_id="alpha").last_seen_at > first_seen, 20)  # the registry sync
        wait_for(lambda: Agent.objects.get(agent_id="alpha").stale_since is not None, 20)  # the sweep
        time.sleep(2.5)  # more sweeps: still one transition
        assert len(streams.recent("agent.stale", 10)) == 1
        agent.post("/api/v1/agents/alpha/heartbeat", {"status": "running"}, format="json")
        assert Agent.objects.get(agent_id="alpha").stale_since is None
        assert len(streams.recent("agent.recovered", 10)) == 1
