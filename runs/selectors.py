"""What other apps may read of the runs and their LLM usage."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum

from runs.models import LlmUsage, Run, RunStatus

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


def llm_cost(since: datetime, until: datetime) -> QuerySet[Any]:
    """The LLM cost of each agent and model between `since` and `until`: rows of agent_name, model, cost."""
    usage = LlmUsage.objects.filter(timestamp__gte=since, timestamp__lte=until)
    return usage.values("agent_name", "model").annotate(cost=Sum("cost"))


def by_event_id(event_ids: set[str]) -> dict[str, Run]:
    """The runs of these event_ids (their id and event_id only), by event_id."""
    return Run.objects.only("id", "event_id").in_bulk(event_ids, field_name="event_id")
