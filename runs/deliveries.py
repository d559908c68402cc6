"""Did a run reach the systems records are forwarded to? Derived from the batch deliveries
(notifications.selectors), per run, on its admin page and in GET /api/v1/runs/{event_id}."""

from __future__ import annotations

from datetime import timedelta

from notifications import selectors as notifications
from runs.models import Run, RunStatus

# A run's lifecycle event is forwarded after it is published (when the run was recorded or ended,
# so by its updated_at); a worker kept down may read it late: batches up to a day later count.
FORWARDING_LAG = timedelta(days=1)
CLOCK_SKEW = timedelta(minutes=1)


def run_deliveries(run: Run) -> list[dict]:
    """Per channel forwarding it, the delivery status of the run's latest announcement: run.started
    while it runs, run.ended once it ended (a run recorded already ended is announced only so)."""
    event_type = "run.started" if run.status == RunStatus.RUNNING else "run.ended"
    since = min(run.created_at, run.start_time) - CLOCK_SKEW
    return notifications.forwarded(event_type, run.event_id, since, run.updated_at + FORWARDING_LAG)
