"""Run payloads as agents send them."""

from __future__ import annotations

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
