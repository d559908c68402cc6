"""Agent metrics, recorded by an agent: agent executions, tool calls, context-window use,
errors and tasks, each under a fixed name, type and labels. Each value is a record in the
client's spool, sent in the background in batches like everything else; /metrics on the server
shows the totals to Prometheus.

    metrics = MetricsRecorder("coder-1")
    metrics.record_agent_execution("coder", "implement", "success", duration_seconds=12.5, tokens=5400, model="claude-sonnet-4")
    metrics.record_tool_call("bash", "success", duration_seconds=0.4)

Labels name kinds of things (agent_type, tool, error_type), not single ones: each distinct set of
labels is a series of its own on the server, which keeps at most METRICS_MAX_SERIES per metric.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from typing import Any

from telemetry_client.client import TelemetryClient
from telemetry_client.common import never_raises, now
from telemetry_client.process import UsesClient

logger = logging.getLogger("telemetry_client")

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,199}")


class MetricsRecorder(UsesClient):
    """Metrics of the agent `agent_name` (the key must be allowed to act as it), recorded by
    `memory` (None: the process's client)."""

    def __init__(self, agent_name: str, memory: TelemetryClient | None = None):
        super().__init__(memory)
        self.agent_name = agent_name

    # --- any metric ---------------------------------------------------------------------------
    @never_raises(default="")
    def record(self, name: str, value: float, metric_type: str = GAUGE, **labels: Any) -> str:
        """One point: a counter's increment, a gauge's value or a histogram's observation. Returns
        its id ("" when refused: a bad name or type, a value that is not a finite number)."""
        if metric_type not in (COUNTER, GAUGE, HISTOGRAM) or not METRIC_NAME.fullmatch(str(name)):
            logger.warning("telemetry: metric %r of type %r refused (name or type)", name, metric_type)
            return ""
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            logger.warning("telemetry: metric %s refused: value %r is not a finite number", name, value)
            return ""
        if metric_type == COUNTER and value < 0:
            logger.warning("telemetry: counter %s refused: an increment of %r (must be >= 0)", name, value)
            return ""
        event_id = str(uuid.uuid4())
        record = {
            "kind": "metric",
            "event_id": event_id,
            "timestamp": now(),
            "agent_name": self.agent_name,
            "name": name,
            "metric_type": metric_type,
            "value": value,
            "labels": {label: str(label_value) for label, label_value in labels.items()},
        }
        return event_id if self.memory._record(record) else ""

    def increment(self, name: str, value: float = 1, **labels: Any) -> str:
        return self.record(name, value, COUNTER, **labels)

    def set(self, name: str, value: float, **labels: Any) -> str:
        return self.record(name, value, GAUGE, **labels)

    def observe(self, name: str, value: float, **labels: Any) -> str:
        return self.record(name, value, HISTOGRAM, **labels)

    # --- the agent metrics ---------------------------------------------------------------------
    def record_agent_execution(
        self,
        agent_type: str,
        phase: str,
        status: str,
        duration_seconds: float | None = None,
        tokens: int | None = None,
        model: str | None = None,
    ) -> None:
        """agent_execution_total, agent_execution_duration_seconds, agent_tokens_used."""
        self.increment("agent_execution_total", agent_type=agent_type, phase=phase, status=status)
        if duration_seconds is not None:
            self.observe("agent_execution_duration_seconds", duration_seconds, agent_type=agent_type, phase=phase)
        if tokens:
            self.increment("agent_tokens_used", tokens, agent_type=agent_type, model=model or "")

    def record_tool_call(
        self, tool: str, status: str, duration_seconds: float | None = None, error_type: str | None = None
    ) -> None:
        """tool_calls_total, tool_call_duration_seconds, and tool_call_success_total or
        tool_call_failure_total (a status other than success/ok is a failure)."""
        self.increment("tool_calls_total", tool=tool, status=status)
        if duration_seconds is not None:
            self.observe("tool_call_duration_seconds", duration_seconds, tool=tool)
        if status in ("success", "ok"):
            self.increment("tool_call_success_total", tool=tool)
        else:
            self.increment("tool_call_failure_total", tool=tool, error_type=error_type or status)

    def record_context_window(self, agent_id: str, session_id: str, size_tokens: int, used_tokens: int) -> None:
        """context_window_utilization (percent), context_window_size_tokens, context_window_used_tokens."""
        if size_tokens > 0:
            self.set("context_window_utilization", 100 * used_tokens / size_tokens, agent_id=agent_id, session_id=session_id)
        self.set("context_window_size_tokens", size_tokens, agent_id=agent_id)
        self.set("context_window_used_tokens", used_tokens, agent_id=agent_id)

    def record_error(self, component: str, error_type: str, severity: str = "error") -> None:
        """error_total (Prometheus's rate() of it is the error rate)."""
        self.increment("error_total", component=component, error_type=error_type, severity=severity)

    def record_task(
        self, task_type: str, status: str, duration_seconds: float | None = None, error_type: str | None = None
    ) -> None:
        """task_duration_seconds, and task_success_total or task_failure_total."""
        if duration_seconds is not None:
            self.observe("task_duration_seconds", duration_seconds, task_type=task_type, status=status)
        if status in ("success", "ok"):
            self.increment("task_success_total", task_type=task_type)
        else:
            self.increment("task_failure_total", task_type=task_type, error_type=error_type or status)

    def set_task_queue_size(self, priority: str, size: int) -> None:
        """task_queue_size."""
        self.set("task_queue_size", size, priority=priority)
