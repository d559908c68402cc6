"""GET /api/v1/traces/<trace_id>: a trace's spans as agents sent them, oldest first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.runs.factories import run_payload

pytestmark = pytest.mark.django_db

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def span(span_id: str, parent: str, name: str, offset_ms: int, **fields) -> dict:
    start = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(milliseconds=offset_ms)
    return {"kind": "span", "trace_id": TRACE, "span_id": span_id, "parent_span_id": parent, "name": name, "agent_name": "alpha",
            "start_time": start.isoformat(), "end_time": (start + timedelta(milliseconds=5)).isoformat(), **fields}  # fmt: skip


def test_a_trace_reads_back_oldest_first_with_its_run(agent, anonymous):
    run = run_payload()
    agent.post("/api/v1/runs", run, format="json")
    items = [
        span("00f067aa0ba902b8", "00f067aa0ba902b7", "child", 2, status="error", status_message="boom"),
        span("00f067aa0ba902b7", "", "root", 0, run_event_id=run["event_id"], attributes={"files": 3}),
    ]
    assert agent.post("/api/v1/ingest", items, format="json").json()["inserted"] == 2
    found = agent.get(f"/api/v1/traces/{TRACE.upper()}")
    assert found.status_code == 200
    body = found.json()
    assert body["trace_id"] == TRACE and [s["name"] for s in body["spans"]] == ["root", "child"]
    root, child = body["spans"]
    assert (root["run_event_id"], root["attributes"], root["duration_ms"]) == (run["event_id"], {"files": 3}, 5.0)
    assert (child["parent_span_id"], child["status"], child["status_message"], child["run_event_id"]) == (
        "00f067aa0ba902b7",
        "error",
        "boom",
        None,
    )
    missing = agent.get("/api/v1/traces/" + "1" * 32)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert anonymous.get(f"/api/v1/traces/{TRACE}").status_code in (401, 403)
