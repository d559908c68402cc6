"""Run payloads as agents send them."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime


def run_payload(agent_name: str = "alpha", **fields) -> dict:
    payload = {
        "event_id": str(uuid.uuid4()),
        "run_id": f"run-{uuid.uuid4().hex[:12]}",
        "agent_name": agent_name,
        "job_type": "translate",
        "start_time": datetime.now(UTC).isoformat(),
    }
    payload.update(fields)
    return payload


def make_run(agent_name: str = "alpha", **fields):
    """A run stored directly, as if an agent had sent it."""
    from runs.models import Run

    return Run.objects.create(**run_payload(agent_name, **fields))


def otlp_json(trace_id: str, agent: str) -> dict:
    """An OTLP/JSON trace export: one good span of `agent` (a client call that failed), and one with a bad id."""
    now = time.time_ns()
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": "svc"}},
                        {"key": "telemetry.agent_name", "value": {"stringValue": agent}},
                    ]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": "00f067aa0ba902b7",
                                "name": "fetch",
                                "kind": 3,
                                "startTimeUnixNano": str(now - 5_000_000),
                                "endTimeUnixNano": str(now),
                                "attributes": [
                                    {"key": "http.status", "value": {"intValue": "200"}},
                                    {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}]}}},
                                ],
                                "status": {"code": 2, "message": "timeout"},
                            },
                            {"traceId": trace_id, "spanId": "bad", "name": "broken"},
                        ]
                    }
                ],
            }
        ]
    }
