"""The SDK's HeartbeatCoordinator and CoordinationSignals against the real server and Redis."""

from __future__ import annotations

import inspect
import threading
import time

import pytest
from telemetry_client import (
    AgentHeartbeat,
    CoordinationSignal,
    CoordinationSignals,
    HeartbeatCoordinator,
    TelemetryClient,
    TelemetryConfig,
)

from tests.conftest import make_key


@pytest.fixture
def memory(live_asgi, transactional_db, tmp_path):
    """A TelemetryClient on the live server with a new key for agent `name`."""

    def make(name: str, api_url: str | None = live_asgi) -> TelemetryClient:
        key = make_key(name)[1]
        return TelemetryClient(TelemetryConfig(api_url=api_url, api_key=key, spool_dir=tmp_path / name))

    return make


def test_signatures_are_the_public_ones():
    expected = {
        HeartbeatCoordinator.__init__: "(self, memory=None, enable_streaming=False)",
        HeartbeatCoordinator.beat: "(self, status='running', progress=0.0, current_task='')",
        HeartbeatCoordinator.stop_heartbeat: "(self, final_status='completed')",
        HeartbeatCoordinator.get_stale_agents: "(self, threshold_seconds=60.0)",
        CoordinationSignals.__init__: "(self, memory=None, agent_id=None, enable_streaming=False)",
        CoordinationSignals.signal: "(self, signal_type, source_agent=None, target_agent=None, payload=None, "
        "ttl_seconds=None, credentials=None)",
        CoordinationSignals.broadcast: "(self, signal_type, source_agent=None, payload=None, ttl_seconds=None, credentials=None)",
        CoordinationSignals.wait_for_signal: "(self, signal_type, source_agent=None, timeout=30.0, poll_interval=0.5)",
        CoordinationSignals.check_signal: "(self, signal_type, source_agent=None, consume=True)",
        CoordinationSignals.get_pending_signals: "(self, signal_type=None)",
        CoordinationSignals.clear_signals: "(self, signal_type=None)",
    }
    for function, signature in expected.items():
        bare = inspect.signature(function).replace(
            parameters=[p.replace(annotation=inspect.Parameter.empty) for p in inspect.signature(function).parameters.values()],
            return_annotation=inspect.Signature.empty,
        )
        assert str(bare) == signature, function.__qualname__
    start = inspect.signature(HeartbeatCoordinator.start_heartbeat).parameters
    assert list(start)[:4] == ["self", "agent_id", "metadata", "display_name"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in list(start.values())[4:])


def test_heartbeats_from_start_to_stop(memory):
    coordinator = HeartbeatCoordinator(memory("worker-1"))
    coordinator.start_heartbeat("worker-1", metadata={"host": "h1"}, display_name="Worker one")
    coordinator.beat(status="indexing", progress=0.5, current_task="file 3 of 6")
    status = coordinator.get_agent_status("worker-1")
    assert isinstance(status, AgentHeartbeat)
    assert (status.status, status.progress, status.current_task, status.display_name) == (
        "indexing",
        0.5,
        "file 3 of 6",
        "Worker one",
    )
    assert status.metadata == {"host": "h1"} and status.last_beat.tzinfo is not None
    assert AgentHeartbeat.from_dict(status.to_dict()) == status
    assert coordinator.is_agent_alive("worker-1") is True
    assert [a.agent_id for a in coordinator.get_active_agents()] == ["worker-1"]
    coordinator.stop_heartbeat(final_status="done")
    assert coordinator.is_agent_alive("worker-1") is False
    assert coordinator.get_agent_status("worker-1").status == "done"
    assert coordinator.get_active_agents() == []
    assert coordinator.get_agent_status("nobody") is None


def test_a_background_thread_keeps_beating_until_stopped(memory):
    coordinator = HeartbeatCoordinator(memory("worker-1"))
    coordinator.start_heartbeat("worker-1", interval=0.2, stale_after_seconds=1)
    coordinator.beat(status="crawling", progress=0.1)
    beaten = coordinator.get_agent_status("worker-1").last_beat
    time.sleep(1.5)  # past its 1 s threshold: only the thread's beats keep it alive
    assert coordinator.get_stale_agents(threshold_seconds=1) == []
    status = coordinator.get_agent_status("worker-1")
    assert status.status == "crawling" and status.last_beat > beaten  # the thread beat since
    coordinator.stop_heartbeat()
    time.sleep(0.5)
    assert coordinator.get_agent_status("worker-1").status == "completed"  # no beat after the stop


def test_signals_directed_broadcast_peek_pending_and_clear(memory):
    lead = CoordinationSignals(memory("lead"), agent_id="lead")
    worker = CoordinationSignals(memory("worker-1"), agent_id="worker-1")
    directed = lead.signal("task_ready", target_agent="worker-1", payload={"task": 7}, ttl_seconds=30)
    everyone = lead.broadcast("shutdown")
    assert directed and everyone
    peeked = worker.check_signal("task_ready", consume=False)
    assert isinstance(peeked, CoordinationSignal) and peeked.payload == {"task": 7} and peeked.source_agent == "lead"
    assert CoordinationSignal.from_dict(peeked.to_dict()) == peeked
    assert [s.signal_id for s in worker.get_pending_signals()] == [directed, everyone]
    assert worker.check_signal("task_ready").signal_id == directed
    assert worker.check_signal("task_ready") is None
    assert lead.check_signal("shutdown") is None  # not to its sender
    assert worker.clear_signals() == 1
    assert worker.get_pending_signals() == []


def test_wait_for_signal_wakes_on_arrival_and_returns_none_on_timeout(memory):
    lead = CoordinationSignals(memory("lead"))  # the key's own agent is the source
    worker = CoordinationSignals(memory("worker-1"))
    # The send wakes it: a wait that ended at its 30 s timeout would find the signal gone (TTL 5 s).
    threading.Timer(0.5, lambda: lead.signal("go", target_agent="worker-1", ttl_seconds=5)).start()
    got = worker.wait_for_signal("go", timeout=30)
    assert got is not None and got.source_agent == "lead"
    assert worker.wait_for_signal("go", source_agent="lead", timeout=0.5) is None


def test_a_key_cannot_signal_as_another_agent(memory, caplog):
    lead = CoordinationSignals(memory("lead"))
    assert lead.signal("go", source_agent="worker-1", target_agent="lead") == ""
    assert "may not act as agent 'worker-1'" in caplog.text
    assert CoordinationSignals(memory("worker-2"), agent_id="lead").check_signal("go") is None


def test_a_dead_server_costs_the_timeout_and_never_raises(memory):
    dead = memory("lead", api_url="http://127.0.0.1:9")
    signals = CoordinationSignals(dead, agent_id="lead")
    assert signals.signal("go", target_agent="x") == ""
    assert signals.wait_for_signal("go", timeout=1.0, poll_interval=0.2) is None
    heartbeat = HeartbeatCoordinator(dead)
    heartbeat.start_heartbeat("lead")
    heartbeat.beat()
    assert heartbeat.get_active_agents() == [] and heartbeat.is_agent_alive("lead") is False
