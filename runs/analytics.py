"""The figures of the analytics page (/analytics/), each one grouped aggregate query over the
filtered runs, usage and feedback (seed 003's dashboard analytics)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import Avg, Case, Count, IntegerField, Q, QuerySet, Sum, Value, When
from django.db.models.functions import TruncDay
from django.utils import timezone

from runs.models import FeedbackEntry, LlmUsage, Run, RunStatus

DEFAULT_DAYS = 30
# Upper bounds (seconds) of the duration histogram's buckets; the last one is open.
DURATION_BUCKETS = [1, 5, 30, 60, 300, 1800]


@dataclass(frozen=True)
class Filters:
    start: date
    end: date  # inclusive
    agent: str = ""

    @classmethod
    def from_query(cls, query) -> Filters:
        """From ?from=YYYY-MM-DD&to=YYYY-MM-DD&agent=; the last DEFAULT_DAYS days by default, and
        whatever does not parse is left at its default."""
        today = timezone.localdate()
        end = _date(query.get("to")) or today
        start = _date(query.get("from")) or end - timedelta(days=DEFAULT_DAYS - 1)
        return cls(min(start, end), max(start, end), (query.get("agent") or "").strip()[:200])

    @property
    def since(self) -> datetime:
        return timezone.make_aware(datetime.combine(self.start, time.min))

    @property
    def until(self) -> datetime:
        return timezone.make_aware(datetime.combine(self.end + timedelta(days=1), time.min))

    def runs(self) -> QuerySet:
        runs = Run.objects.filter(created_at__gte=self.since, created_at__lt=self.until)
        return runs.filter(agent_name=self.agent) if self.agent else runs

    def usage(self) -> QuerySet:
        calls = LlmUsage.objects.filter(timestamp__gte=self.since, timestamp__lt=self.until)
        return calls.filter(agent_name=self.agent) if self.agent else calls

    def feedback(self) -> QuerySet:
        ratings = FeedbackEntry.objects.filter(timestamp__gte=self.since, timestamp__lt=self.until)
        return ratings.filter(agent_name=self.agent) if self.agent else ratings


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _day(value) -> str:
    return value.date().isoformat() if isinstance(value, datetime) else str(value)


def _duration_bucket():
    """The index of a run's bucket in DURATION_BUCKETS (len: longer than the last bound)."""
    whens = [When(duration_ms__lt=bound * 1000, then=Value(index)) for index, bound in enumerate(DURATION_BUCKETS)]
    return Case(*whens, default=Value(len(DURATION_BUCKETS)), output_field=IntegerField())


def duration_labels() -> list[str]:
    bounds = ["0", *(f"{b} s" if b < 60 else f"{b // 60} min" for b in DURATION_BUCKETS)]
    return [f"{low} to {high}" for low, high in itertools.pairwise(bounds)] + [f"over {bounds[-1]}"]


def figures(filters: Filters) -> dict:
    runs, usage, feedback = filters.runs(), filters.usage(), filters.feedback()
    by_agent = (
        runs.values("agent_name")
        .annotate(runs=Count("id"), succeeded=Count("id", filter=Q(status=RunStatus.SUCCESS)))
        .order_by("-runs")[:30]
    )
    by_day = (
        runs.annotate(day=TruncDay("created_at"))
        .values("day")
        .annotate(
            runs=Count("id"),
            failed=Count("id", filter=Q(status__in=[RunStatus.FAILED, RunStatus.TIMEOUT])),
            items_succeeded=Sum("items_succeeded"),
            items_failed=Sum("items_failed"),
        )
        .order_by("day")
    )
    durations = dict(
        runs.exclude(status=RunStatus.RUNNING).annotate(bucket=_duration_bucket()).values_list("bucket").annotate(n=Count("id"))
    )
    job_types = runs.values("job_type").annotate(runs=Count("id")).order_by("-runs")[:15]
    cost_by_day = (
        usage.annotate(day=TruncDay("timestamp"))
        .values("day", "tier")
        .annotate(cost=Sum("cost"), tokens=Sum("input_tokens") + Sum("output_tokens"))
        .order_by("day", "tier")
    )
    cost_by_model = usage.values("model").annotate(cost=Sum("cost"), calls=Count("id")).order_by("-cost")[:15]
    quality = feedback.values("stage_name").annotate(avg=Avg("quality_score"), n=Count("id")).order_by("stage_name")[:30]
    totals = runs.aggregate(runs=Count("id"), succeeded=Count("id", filter=Q(status=RunStatus.SUCCESS)))
    return {
        "filters": {"from": filters.start.isoformat(), "to": filters.end.isoformat(), "agent": filters.agent},
        "totals": {**totals, **usage.aggregate(cost=Sum("cost"), calls=Count("id"))},
        "success_by_agent": [
            {"agent": row["agent_name"], "runs": row["runs"], "rate": row["succeeded"] / row["runs"]} for row in by_agent
        ],
        "activity": [
            {
                "day": _day(row["day"]),
                "runs": row["runs"],
                "failed": row["failed"],
                "items_succeeded": row["items_succeeded"] or 0,
                "items_failed": row["items_failed"] or 0,
            }
            for row in by_day
        ],
        "durations": {"labels": duration_labels(), "runs": [durations.get(i, 0) for i in range(len(DURATION_BUCKETS) + 1)]},
        "job_types": [{"job_type": row["job_type"], "runs": row["runs"]} for row in job_types],
        "cost_by_day": [
            {
                "day": _day(row["day"]),
                "tier": row["tier"] or "(none)",
                "cost": float(row["cost"] or 0),
                "tokens": row["tokens"] or 0,
            }
            for row in cost_by_day
        ],
        "cost_by_model": [
            {"model": row["model"], "cost": float(row["cost"] or 0), "calls": row["calls"]} for row in cost_by_model
        ],
        "quality_by_stage": [{"stage": row["stage_name"], "avg": row["avg"], "ratings": row["n"]} for row in quality],
    }
