"""What other apps may read of the runs and their events."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from runs.models import Run, RunEvent, RunStatus

__all__ = ["FAILED", "RunStatus"]  # the statuses a run may have, for the apps that count them

FAILED = (RunStatus.FAILED, RunStatus.TIMEOUT)


def failed_runs(ended_since: datetime, job_type: str = "") -> QuerySet[Run]:
    """Runs that failed or timed out since `ended_since` (of `job_type`, if given), in the order
    they ended."""
    runs = Run.objects.filter(status__in=FAILED, end_time__gte=ended_since)
    if job_type:
        runs = runs.filter(job_type=job_type)
    return runs.order_by("end_time").only("event_id", "run_id", "agent_name", "job_type", "status", "end_time", "error_summary")


def succeeded_after(agent_name: str, job_type: str, moment: datetime | str) -> bool:
    """Whether a run of `agent_name` and `job_type` ended successfully after `moment`."""
    return Run.objects.filter(agent_name=agent_name, job_type=job_type, status=RunStatus.SUCCESS, end_time__gt=moment).exists()


def ended_run_counts(ended_since: datetime) -> QuerySet[Any]:
    """Per agent: its runs that ended since `ended_since` (`total`) and those that failed (`failed`)."""
    ended = Run.objects.filter(end_time__gte=ended_since).exclude(status=RunStatus.RUNNING)
    return ended.values("agent_name").annotate(total=Count("id"), failed=Count("id", filter=Q(status__in=FAILED)))


def run_counters() -> dict:
    """local-telemetry's /metrics counters: runs kept (`total_runs`), by agent (`agents`), and those
    created in the last 24 hours (`recent_24h`). One grouped query, on the (agent_name, created_at) index."""
    since = timezone.now() - timedelta(hours=24)
    rows = list(
        Run.objects.values_list("agent_name")
        .annotate(runs=Count("agent_name"), recent=Count("created_at", filter=Q(created_at__gte=since)))
        .order_by("agent_name")
    )
    return {
        "total_runs": sum(runs for _, runs, _ in rows),
        "agents": {agent: runs for agent, runs, _ in rows},
        "recent_24h": sum(recent for _, _, recent in rows),
    }


def by_event_id(event_ids: set[str]) -> dict[str, Run]:
    """The runs of these event_ids (their id and event_id only), by event_id."""
    return Run.objects.only("id", "event_id").in_bulk(event_ids, field_name="event_id")


def created_between(since: datetime, until: datetime, agent: str = "") -> QuerySet[Run]:
    """Runs created from `since` until before `until` (of `agent`, if given)."""
    runs = Run.objects.filter(created_at__gte=since, created_at__lt=until)
    return runs.filter(agent_name=agent) if agent else runs


def first_created() -> datetime | None:
    """When the oldest run kept was created."""
    return Run.objects.aggregate(first=Min("created_at"))["first"]


def events_of_type(event_type: str, since: datetime) -> QuerySet[RunEvent]:
    """Events of `event_type` since `since`, of every run."""
    return RunEvent.objects.filter(event_type=event_type, timestamp__gte=since)
