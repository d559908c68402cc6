"""The figures of the analytics page (/analytics/), each one grouped query over the period's
daily rollups, or its feedback."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

from django.db.models import Avg, Count, Q, Sum
from django.utils import timezone

from quality.models import DURATION_BUCKETS
from quality.rollups import Period
from runs.selectors import RunStatus

DEFAULT_DAYS = 30


def period_of(query) -> Period:
    """The period of ?from=YYYY-MM-DD&to=YYYY-MM-DD&agent=: the last DEFAULT_DAYS days by default,
    and whatever does not parse is left at its default."""
    today = timezone.localdate()
    end = _date(query.get("to")) or today
    start = _date(query.get("from")) or end - timedelta(days=DEFAULT_DAYS - 1)
    return Period(min(start, end), max(start, end), (query.get("agent") or "").strip()[:200])


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def duration_labels() -> list[str]:
    bounds = [f"{b} s" if b < 60 else f"{b // 60} min" for b in DURATION_BUCKETS.values() if b]
    return [f"{low} to {high}" for low, high in itertools.pairwise(["0", *bounds])] + [f"over {bounds[-1]}"]


def figures(period: Period) -> dict:
    runs, usage, feedback = period.run_days(), period.usage_days(), period.feedback()
    counted = {"runs": Sum("run_count"), "succeeded": Sum("run_count", filter=Q(status=RunStatus.SUCCESS), default=0)}
    by_agent = runs.values("agent_name").annotate(**counted).order_by("-runs")[:30]
    by_day = (
        runs.values("day")
        .annotate(
            runs=Sum("run_count"),
            failed=Sum("run_count", filter=Q(status__in=[RunStatus.FAILED, RunStatus.TIMEOUT]), default=0),
            items_succeeded=Sum("items_succeeded_sum"),
            items_failed=Sum("items_failed_sum"),
        )
        .order_by("day")
    )
    durations = runs.exclude(status=RunStatus.RUNNING).aggregate(**{name: Sum(name, default=0) for name in DURATION_BUCKETS})
    job_types = runs.values("job_type").annotate(runs=Sum("run_count")).order_by("-runs")[:15]
    cost_by_day = (
        usage.values("day", "tier")
        .annotate(cost=Sum("cost_sum"), tokens=Sum("input_tokens_sum") + Sum("output_tokens_sum"))
        .order_by("day", "tier")
    )
    cost_by_model = usage.values("model").annotate(cost=Sum("cost_sum"), calls=Sum("call_count")).order_by("-cost")[:15]
    quality = feedback.values("stage_name").annotate(avg=Avg("quality_score"), n=Count("id")).order_by("stage_name")[:30]
    totals = {
        **runs.aggregate(runs=Sum("run_count", default=0), succeeded=counted["succeeded"]),
        **usage.aggregate(cost=Sum("cost_sum"), calls=Sum("call_count", default=0)),
    }
    return {
        "filters": {"from": period.start.isoformat(), "to": period.end.isoformat(), "agent": period.agent},
        "totals": totals,
        "success_by_agent": [
            {"agent": row["agent_name"], "runs": row["runs"], "rate": row["succeeded"] / row["runs"]} for row in by_agent
        ],
        "activity": [
            {
                "day": row["day"].isoformat(),
                "runs": row["runs"],
                "failed": row["failed"],
                "items_succeeded": row["items_succeeded"],
                "items_failed": row["items_failed"],
            }
            for row in by_day
        ],
        "durations": {"labels": duration_labels(), "runs": list(durations.values())},
        "job_types": [{"job_type": row["job_type"], "runs": row["runs"]} for row in job_types],
        "cost_by_day": [
            {"day": row["day"].isoformat(), "tier": row["tier"] or "(none)", "cost": float(row["cost"]), "tokens": row["tokens"]}
            for row in cost_by_day
        ],
        "cost_by_model": [{"model": row["model"], "cost": float(row["cost"]), "calls": row["calls"]} for row in cost_by_model],
        "quality_by_stage": [{"stage": row["stage_name"], "avg": row["avg"], "ratings": row["n"]} for row in quality],
    }
