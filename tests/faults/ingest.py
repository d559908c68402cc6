"""What the fault tests share: the outage's length, a wait on a condition, and a finished run as an
ingest item."""

from __future__ import annotations

import time
from datetime import UTC, datetime

OUTAGE_SECONDS = 10


def wait_for(condition, seconds: float = 30, every: float = 0.2) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(every)


def run_item(event_id: str, agent: str = "alpha") -> dict:
    """An ingest item for a finished run; its run_id is its event_id."""
    now = datetime.now(UTC).isoformat()
    return {
        "kind": "run",
        "event_id": event_id,
        "run_id": event_id,
        "agent_name": agent,
        "job_type": "faults",
        "start_time": now,
        "end_time": now,
        "status": "success",
        "items_discovered": 7,
        "input_summary": f"input of {event_id}",
    }
