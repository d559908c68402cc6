"""One client per process (telemetry_client.init / get_client) against the real server: the helpers
share it, init() reconfigures it, TELEMETRY_ENABLED=false makes it a no-op, local-telemetry's
variables configure it, its questions read its own writes, and associate_commit finds runs
other processes started."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import telemetry_client
from telemetry_client import (
    ApprovalGate,
    CoordinationSignals,
    EventStreamer,
    FeedbackLoop,
    HeartbeatCoordinator,
    HelpTracker,
    MetricsRecorder,
    ModelTier,
    TelemetryConfig,
    TelemetryFeatures,
    Tracer,
    UsageTracker,
)

from core.redis import get_redis
from metrics.models import MetricPoint
from quality.models import FeedbackEntry, LlmUsage, TemplateFeedback
from runs.models import Run
from tests.services import ROOT
from traces.models import Span

AGENT = Path(__file__).with_name("agent_process.py")


def senders() -> int:
    return sum(thread.name == "telemetry-sender" for thread in threading.enumerate())


@pytest.fixture
def environment(live_asgi, agent_key, monkeypatch):
    """The process's client configured from the environment, on the live server."""
    monkeypatch.setenv("TELEMETRY_API_URL", live_asgi)
    monkeypatch.setenv("TELEMETRY_API_KEY", agent_key)
    return monkeypatch


def every_helper(memory=None, folder: Path | None = None) -> dict[str, object]:
    return {
        "heartbeat": HeartbeatCoordinator(memory),
        "signals": CoordinationSignals(memory, agent_id="alpha"),
        "gate": ApprovalGate(memory, agent_id="alpha"),
        "streamer": EventStreamer(memory),
        "feedback": FeedbackLoop(memory),
        "metrics": MetricsRecorder("alpha", memory),
        "tracer": Tracer("alpha", memory),
        "features": TelemetryFeatures(memory),
        "usage": UsageTracker(folder, memory, agent_name="alpha"),
        "help": HelpTracker(folder, memory),
    }


def client_of(helper):
    return helper._api.memory if hasattr(helper, "_api") else helper.memory


@pytest.mark.usefixtures("sonnet_price")
def test_every_helper_shares_the_process_client_and_its_one_sender(environment, tmp_path):
    before = senders()
    helpers = every_helper(folder=tmp_path / "local")
    client = telemetry_client.get_client()
    assert all(client_of(helper) is client for helper in helpers.values())
    assert telemetry_client.get_client() is client

    helpers["metrics"].increment("pages_total", 3)
    helpers["tracer"].end_span(helpers["tracer"].start_trace("crawl"))
    helpers["usage"].track_llm_call("docs", "draft", "capable", "claude-sonnet-4", 100, 10)
    helpers["help"].record_feedback("faq-1", good=True)
    assert helpers["feedback"].record_feedback("docs", "draft", ModelTier.CHEAP, 0.8)
    assert helpers["feedback"].get_quality_stats("docs", "draft").sample_count == 1  # no flush() needed
    assert helpers["signals"].signal("go", target_agent="alpha") and helpers["signals"].check_signal("go")
    assert helpers["streamer"].publish_event("deploys", {"v": 1})
    assert helpers["gate"].get_pending_approvals() == []
    assert helpers["features"].is_available("database")
    helpers["heartbeat"].start_heartbeat("alpha")
    assert helpers["heartbeat"].is_agent_alive("alpha")

    assert senders() == before + 1
    assert client.flush(timeout=10)
    assert MetricPoint.objects.filter(series__name="pages_total").exists() and Span.objects.filter(name="crawl").exists()
    assert LlmUsage.objects.get().agent_name == "alpha" and TemplateFeedback.objects.get().template_id == "faq-1"


def test_init_reconfigures_the_process_client_and_the_helpers_made_before_it(live_asgi, agent_key, tmp_path):
    metrics = MetricsRecorder("alpha")  # made before init(): the environment names no server
    first = telemetry_client.get_client()
    assert first.config.api_url is None and first.sender is None
    before = senders()

    second = telemetry_client.init(api_url=live_asgi, api_key=agent_key, spool_dir=tmp_path / "spool")
    assert telemetry_client.get_client() is second is metrics.memory and first._closed
    assert second.config.spool_dir == tmp_path / "spool"
    metrics.set("queue_size", 5)
    assert second.flush(timeout=10)
    assert MetricPoint.objects.get(series__name="queue_size").value == 5

    third = telemetry_client.init(TelemetryConfig(api_url=live_asgi, api_key=agent_key, spool_dir=tmp_path / "other"))
    assert metrics.memory is third and second._closed and not second.sender.is_alive()
    assert senders() == before + 1  # the replaced client's sender stopped


def test_disabled_telemetry_is_a_cheap_no_op(monkeypatch, tmp_path):
    monkeypatch.setenv("TELEMETRY_ENABLED", "false")
    monkeypatch.setenv("TELEMETRY_API_URL", "http://127.0.0.1:9")  # unreachable: a call that tried would wait
    monkeypatch.setenv("TELEMETRY_API_KEY", "key")
    monkeypatch.setenv("TELEMETRY_SPOOL_DIR", str(tmp_path / "spool"))
    threads = threading.active_count()
    started = time.monotonic()

    client = telemetry_client.get_client()
    with client.track_run("alpha", "quiet") as ctx:
        ctx.log_event("step")
        ctx.set_metrics(items_succeeded=1)
    assert client.associate_commit(ctx.run_id, "abcdef12", "ci")[0] is False
    assert client.associate_commit("elsewhere", "abcdef12", "ci")[0] is False
    assert client.record_llm_usage("alpha", "claude-sonnet-4", 1, 1) == ""
    helpers = every_helper()
    helpers["heartbeat"].start_heartbeat("alpha", interval=0.01)
    helpers["heartbeat"].beat(status="busy")
    assert helpers["signals"].wait_for_signal("go", timeout=10) is None
    assert helpers["signals"].signal("go") == "" and helpers["signals"].get_pending_signals() == []
    refused = helpers["gate"].request_approval("deploy", timeout=60)
    assert (refused.approved, refused.reason) == (False, "Not approved: telemetry is disabled (TELEMETRY_ENABLED=false).")
    assert helpers["streamer"].publish_event("deploys", {}) == "" and list(helpers["streamer"].consume_events(["x"])) == []
    assert helpers["feedback"].record_feedback("docs", "draft", "cheap", 0.5) == ""
    assert helpers["feedback"].get_quality_stats("docs", "draft") is None
    assert helpers["feedback"].recommend_tier("docs", "draft", "capable").confidence == 0.0
    assert helpers["metrics"].increment("pages_total") == ""
    assert helpers["tracer"].end_span(helpers["tracer"].start_trace("quiet")) is False
    assert helpers["usage"].track_llm_call("docs", "draft", "cheap", "m") is False
    assert helpers["help"].track_query("how") is False
    assert client.flush(timeout=10) is True
    client.close()

    assert time.monotonic() - started < 1.0
    assert not (tmp_path / "spool").exists()  # no spool, no local tracker files
    assert threading.active_count() == threads  # no sender, no heartbeat thread
    assert client.get_stats()["accepted"] == client.get_stats()["dropped"] == 0


def test_disabled_log_event_costs_next_to_nothing(monkeypatch):
    monkeypatch.setenv("TELEMETRY_ENABLED", "0")
    client = telemetry_client.get_client()
    run_id = client.start_run("alpha", "quiet")
    times = []
    for _ in range(2000):
        started = time.perf_counter()
        client.log_event(run_id, "step", {"n": 1})
        times.append(time.perf_counter() - started)
    assert sorted(times)[len(times) // 2] < 20e-6


def test_a_forked_child_makes_a_process_client_of_its_own(tmp_path):
    parent = telemetry_client.init(api_url="", spool_dir=tmp_path)
    pid = os.fork()
    if pid == 0:  # the child: its client must not write through the parent's slot
        child = telemetry_client.get_client()
        os._exit(0 if child is not parent and child.spool.path.name == "slot-1" else 1)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert telemetry_client.get_client() is parent


def test_local_telemetrys_variables_are_read_when_ours_are_unset(live_asgi, agent_key, monkeypatch):
    monkeypatch.delenv("TELEMETRY_API_URL", raising=False)
    monkeypatch.delenv("TELEMETRY_API_KEY", raising=False)
    monkeypatch.setenv("METRICS_API_URL", live_asgi)
    monkeypatch.setenv("METRICS_API_TOKEN", f"{agent_key}\n")
    monkeypatch.setenv("METRICS_API_ENABLED", "true")
    client = telemetry_client.get_client()
    assert (client.config.api_url, client.config.api_key, client.enabled) == (live_asgi, agent_key, True)
    with client.track_run("alpha", "legacy", run_id="legacy-1"):
        pass
    assert client.flush(timeout=10)
    assert Run.objects.get(run_id="legacy-1").status == "success"

    monkeypatch.setenv("TELEMETRY_API_URL", "http://ours.example")
    monkeypatch.setenv("TELEMETRY_API_KEY", "ours")
    assert (TelemetryConfig.from_env().api_url, TelemetryConfig.from_env().api_key) == ("http://ours.example", "ours")
    monkeypatch.setenv("METRICS_API_ENABLED", "false")
    assert TelemetryConfig.from_env().enabled is False
    monkeypatch.setenv("TELEMETRY_ENABLED", "true")  # ours wins
    assert TelemetryConfig.from_env().enabled is True


def test_a_foreign_memory_is_ignored_with_one_warning(environment, tmp_path, sdk_logs):
    redis = get_redis()  # what code ported from a Redis-backed API passes
    helpers = every_helper(redis, tmp_path / "local")
    client = telemetry_client.get_client()
    assert all(client_of(helper) is client for helper in helpers.values())
    assert sdk_logs.text.count("is not a TelemetryClient") == 1
    assert "redis.client.Redis" in sdk_logs.text
    assert helpers["signals"].signal("go", target_agent="alpha")
    assert helpers["signals"].check_signal("go") is not None


def test_questions_read_the_clients_own_writes_without_a_flush(live_asgi, make_client):
    client = make_client(live_asgi, flush_interval=30)  # a record could wait 30 s for its batch to fill
    loop = FeedbackLoop(client)
    for score in (0.5, 0.7, 0.9):
        loop.record_feedback("docs", "review", ModelTier.PREMIUM, score)
    loop.record_template_feedback("faq-2", good=False)
    started = time.monotonic()
    stats = loop.get_quality_stats("docs", "review")
    assert (stats.sample_count, stats.avg_quality) == (3, pytest.approx(0.7))
    assert loop.get_template_confidence("faq-2") == 0.0
    assert time.monotonic() - started < 5
    assert FeedbackEntry.objects.count() == 3


def test_a_question_waits_only_briefly_for_records_a_down_server_cannot_take(make_client):
    client = make_client("http://127.0.0.1:9")
    loop = FeedbackLoop(client)
    loop.record_feedback("docs", "draft", "cheap", 0.5)
    started = time.monotonic()
    assert loop.get_quality_stats("docs", "draft") is None
    assert loop.get_quality_stats("docs", "draft") is None  # the sender is failing now: no wait at all
    assert time.monotonic() - started < 4
    assert client.get_stats()["pending_bytes"] > 0  # kept for later


def test_associate_commit_for_a_run_another_process_started(live_asgi, agent_key, make_client, tmp_path):
    env = {"TELEMETRY_API_URL": live_asgi, "TELEMETRY_API_KEY": agent_key, "TELEMETRY_SPOOL_DIR": str(tmp_path / "agent")}
    agent = subprocess.run(
        [sys.executable, str(AGENT), "exit", "1"], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )
    assert agent.returncode == 0, agent.stderr
    client = make_client(live_asgi)
    ok, message = client.associate_commit("exit-000000", "ABCDEF1234", "ci", "CI <ci@example.com>")
    assert ok, message
    run = Run.objects.get(run_id="exit-000000")
    assert (run.git_commit_hash, run.git_commit_source, run.git_commit_author) == ("abcdef1234", "ci", "CI <ci@example.com>")

    assert client.associate_commit("never-started", "abcdef12", "ci") == (False, "[ERROR] Run ID not found: never-started")
    offline = make_client("http://127.0.0.1:9")
    ok, message = offline.associate_commit("exit-000000", "abcdef12", "ci")
    assert not ok and "the server could not be asked" in message
