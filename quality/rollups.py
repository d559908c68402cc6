"""Daily rollups of runs and LLM usage, and the Period reports and /analytics/ read them over.

A million runs take seconds to group; their rollups take milliseconds. Each day's rollup rows are
a pure function of that day's runs and usage: every write notes its day (models.ChangedDay; the
runs app announces its writes, quality.receivers notes them), and before rollups are read the
noted days of the period are recomputed from their rows, so readers always see current figures.
Beat recomputes every noted day each minute, which keeps that work to the latest changes. Days
are calendar days in TIME_ZONE: after changing it, run `python manage.py telemetry rollup --rebuild`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Min, Q, QuerySet, Sum
from django.utils import timezone

from quality.models import DURATION_BUCKETS, ChangedDay, FeedbackEntry, LlmUsage, RunDay, UsageDay, UsageStageDay
from runs import selectors as runs


def start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _duration_counts() -> dict[str, Count]:
    counts, low = {}, 0
    for name, high in DURATION_BUCKETS.items():
        within = Q(duration_ms__gte=low * 1000) & (Q(duration_ms__lt=high * 1000) if high else Q())
        counts[name], low = Count("id", filter=within), high
    return counts


def _usage_counts() -> dict:
    return {
        "call_count": Count("id"),
        "ok_count": Count("id", filter=Q(success=True)),
        "fallback_count": Count("id", filter=Q(fallback=True)),
        "cost_sum": Sum("cost"),
        "fallback_cost_sum": Sum("cost", filter=Q(fallback=True), default=0),
    }


def _recompute(day: date) -> None:
    """Replace the day's rollup rows with ones computed from its runs and usage."""
    day_runs, calls = Period(day, day).runs(), Period(day, day).usage()
    run_groups = day_runs.values("agent_name", "job_type", "status").annotate(
        run_count=Count("id"),
        items_succeeded_sum=Sum("items_succeeded"),
        items_failed_sum=Sum("items_failed"),
        duration_ms_sum=Sum("duration_ms"),
        created_at_max=Max("created_at"),
        **_duration_counts(),
    )
    usage_groups = calls.values("agent_name", "model", "tier").annotate(
        **_usage_counts(),
        input_tokens_sum=Sum("input_tokens"),
        output_tokens_sum=Sum("output_tokens"),
        cache_read_tokens_sum=Sum("cache_read_tokens"),
        cache_write_tokens_sum=Sum("cache_write_tokens"),
        latency_ms_sum=Sum("latency_ms"),
    )
    stage_groups = calls.values("workflow", "stage", "task_type", "model", "tier").annotate(**_usage_counts())
    for rollup, groups in ((RunDay, run_groups), (UsageDay, usage_groups), (UsageStageDay, stage_groups)):
        rollup.objects.filter(day=day).delete()
        rollup.objects.bulk_create([rollup(day=day, **group) for group in groups], batch_size=500)


def refresh(start: date | None = None, end: date | None = None) -> int:
    """Recompute the noted days (between `start` and `end` if given); how many it recomputed.

    Per day, in one transaction: claim the day's notes (locked, so a concurrent refresh skips
    them), recompute, delete the notes. A write that commits meanwhile leaves a note this
    refresh did not see, so the day is recomputed again next time."""
    noted = ChangedDay.objects.all()
    if start:
        noted = noted.filter(day__gte=start)
    if end:
        noted = noted.filter(day__lte=end)
    done = 0
    for day in noted.values_list("day", flat=True).distinct().order_by("day"):
        try:
            with transaction.atomic():
                claimed = list(
                    ChangedDay.objects.select_for_update(skip_locked=True).filter(day=day).values_list("pk", flat=True)
                )
                if not claimed:
                    continue
                _recompute(day)
                ChangedDay.objects.filter(pk__in=claimed).delete()
                done += 1
        except IntegrityError:
            continue  # another refresh recomputed the day at the same time; its notes remain for the next
    return done


def forget(include_runs: bool) -> None:
    """After every usage record (with `include_runs`, every run too) is deleted: their rollups go
    as well (a bulk delete notes no days, and recomputing every day would only empty them)."""
    for rollup in (UsageDay, UsageStageDay, *((RunDay,) if include_runs else ())):
        rollup.objects.all().delete()


def rebuild() -> int:
    """Note every day from the first run or usage record to today, and recompute them all (after
    an import, a TIME_ZONE change, or to repair); how many days."""
    firsts = [
        runs.first_created(),
        LlmUsage.objects.aggregate(first=Min("timestamp"))["first"],
    ]
    today = timezone.localdate()
    first = min((timezone.localdate(moment) for moment in firsts if moment), default=today)
    days = [first + timedelta(days=offset) for offset in range((today - first).days + 1)]
    for rollup in (RunDay, UsageDay, UsageStageDay):
        rollup.objects.exclude(day__range=(first, today)).delete()
    ChangedDay.objects.bulk_create([ChangedDay(day=day) for day in days], batch_size=500)
    return refresh()


@dataclass(frozen=True)
class Period:
    """Whole days from `start` to `end` (inclusive), optionally of one agent: the rollups and the
    raw rows in it."""

    start: date
    end: date
    agent: str = ""

    @classmethod
    def last(cls, days: int) -> Period:
        """The last `days` days, today included."""
        today = timezone.localdate()
        return cls(today - timedelta(days=days - 1), today)

    def before(self) -> Period:
        """The period of the same length just before this one."""
        length = self.end - self.start + timedelta(days=1)
        return Period(self.start - length, self.end - length, self.agent)

    @property
    def since(self) -> datetime:
        return start_of(self.start)

    @property
    def until(self) -> datetime:
        return start_of(self.end + timedelta(days=1))

    def _rows(self, queryset: QuerySet, moment: str) -> QuerySet:
        rows = queryset.filter(**{f"{moment}__gte": self.since, f"{moment}__lt": self.until})
        return rows.filter(agent_name=self.agent) if self.agent else rows

    def _days(self, rollup, by_agent: bool = True) -> QuerySet:
        refresh(self.start, self.end)
        days = rollup.objects.filter(day__gte=self.start, day__lte=self.end)
        return days.filter(agent_name=self.agent) if self.agent and by_agent else days

    def runs(self) -> QuerySet:
        return runs.created_between(self.since, self.until, self.agent)

    def usage(self) -> QuerySet:
        return self._rows(LlmUsage.objects.all(), "timestamp")

    def feedback(self) -> QuerySet:
        return self._rows(FeedbackEntry.objects.all(), "timestamp")

    def run_days(self) -> QuerySet:
        return self._days(RunDay)

    def usage_days(self) -> QuerySet:
        return self._days(UsageDay)

    def stage_days(self) -> QuerySet:
        """Usage by workflow stage and task type: of every agent (it has no agent to filter by)."""
        return self._days(UsageStageDay, by_agent=False)
