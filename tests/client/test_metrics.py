"""The SDK's MetricsRecorder against the real server: the agent metrics arrive under their names
and /metrics shows them."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from telemetry_client import MetricsRecorder

from metrics.models import MetricPoint
from tests.conftest import make_key
from tests.services import PROMETHEUS_ACCEPT


@pytest.fixture
def client(live_asgi, make_client):
    return make_client(live_asgi)


def test_agent_metrics_reach_prometheus(live_asgi, client):
    metrics = MetricsRecorder("alpha", client)
    for duration in (0.3, 0.4, 40):
        metrics.record_agent_execution("coder", "implement", "success", duration_seconds=duration, tokens=1000, model="m")
    metrics.record_tool_call("bash", "success", duration_seconds=0.1)
    metrics.record_tool_call("bash", "failed", error_type="timeout")
    metrics.record_context_window("alpha", "s1", size_tokens=200_000, used_tokens=50_000)
    metrics.record_error("planner", "ValueError")
    metrics.record_task("index", "success", duration_seconds=2)
    metrics.set_task_queue_size("high", 7)
    assert client.flush(timeout=10)
    scraper = make_key("prometheus", scopes=["metrics:read"])[1]
    text = httpx.get(f"{live_asgi}/metrics", headers={"Authorization": f"Bearer {scraper}", "Accept": PROMETHEUS_ACCEPT}).text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }

    def value(name: str, **labels) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    coder = {"agent_type": "coder", "phase": "implement"}
    assert value("agent_execution_total", **coder, status="success") == 3
    assert value("agent_execution_duration_seconds_count", **coder) == 3
    assert value("agent_execution_duration_seconds_bucket", **coder, le="0.5") == 2
    assert value("agent_tokens_used_total", agent_type="coder", model="m") == 3000
    assert value("tool_call_failure_total", error_type="timeout", tool="bash") == 1
    assert value("context_window_utilization", agent_id="alpha", session_id="s1") == 25
    assert value("error_total", component="planner", error_type="ValueError", severity="error") == 1
    assert value("task_queue_size", priority="high") == 7


def test_bad_values_are_refused_in_the_agent_without_raising(client, sdk_logs):
    metrics = MetricsRecorder("alpha", client)
    assert metrics.increment("x_total", -1) == ""
    assert metrics.set("x", float("inf")) == ""
    assert metrics.record("bad name", 1) == ""
    assert metrics.record("x", 1, "summary") == ""
    assert metrics.set("fine", 1)
    assert client.flush(timeout=10)
    assert MetricPoint.objects.count() == 1
    assert "must be >= 0" in sdk_logs.text
