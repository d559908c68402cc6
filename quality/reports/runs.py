"""Reports on runs: two periods compared, each agent's performance, tests and test files; and
which of the server's features work now."""

from __future__ import annotations

from typing import Any

from django.db.models import Avg, Count, Max, Q, Sum
from django.db.models.fields.json import KT

from core.features import AVAILABLE, features
from quality.reports.base import DEFAULT_DAYS, ENDED, TOKEN_SUMS, Report, money, ratio, rollup_sum
from quality.rollups import Period
from runs import selectors as runs
from runs.selectors import RunStatus


def _average_seconds(total_ms: int, count: int) -> float | None:
    return round(total_ms / count / 1000, 2) if count else None


def _period_figures(period: Period) -> dict[str, Any]:
    runs = period.run_days().aggregate(
        runs=rollup_sum("run_count"),
        succeeded=rollup_sum("run_count", status=RunStatus.SUCCESS),
        ended=Sum("run_count", filter=ENDED, default=0),
        duration=Sum("duration_ms_sum", filter=ENDED, default=0),
        items=rollup_sum("items_succeeded_sum"),
    )
    calls = period.usage_days().aggregate(
        **TOKEN_SUMS, latency=rollup_sum("latency_ms_sum"), fallbacks=rollup_sum("fallback_count")
    )
    quality = period.feedback().aggregate(avg=Avg("quality_score"))
    return {
        "runs": runs["runs"],
        "run success rate": ratio(runs["succeeded"], runs["ended"]),
        "avg run duration s": _average_seconds(runs["duration"], runs["ended"]),
        "items succeeded": runs["items"],
        "model calls": calls["calls"],
        "tokens": calls["input"] + calls["output"],
        "cost $": money(calls["spent"]),
        "avg latency ms": round(calls["latency"] / calls["calls"], 1) if calls["calls"] else None,
        "fallback rate": ratio(calls["fallbacks"], calls["calls"]),
        "avg quality": round(quality["avg"], 4) if quality["avg"] is not None else None,
    }


def compare(days: int = 7) -> Report:
    """The last `days` against the `days` before them."""
    period = Period.last(days)
    before, current = _period_figures(period.before()), _period_figures(period)
    rows = []
    for name, value in current.items():
        earlier = before[name]
        change = ratio(float(value) - float(earlier), float(earlier)) if value is not None and earlier else None
        rows.append([name, earlier, value, change])
    return Report(f"The last {days} days against the {days} before", ["metric", "before", "last", "change"], rows, {"days": days})


def agent_performance(days: int = DEFAULT_DAYS) -> Report:
    """Per agent: runs and how they ended, duration, items, model calls and cost."""
    period = Period.last(days)
    runs = (
        period.run_days()
        .values("agent_name")
        .annotate(
            runs=rollup_sum("run_count"),
            succeeded=rollup_sum("run_count", status=RunStatus.SUCCESS),
            failed=rollup_sum("run_count", status__in=[RunStatus.FAILED, RunStatus.TIMEOUT]),
            ended=Sum("run_count", filter=ENDED, default=0),
            duration=Sum("duration_ms_sum", filter=ENDED, default=0),
            items=rollup_sum("items_succeeded_sum"),
            item_failures=rollup_sum("items_failed_sum"),
        )
    )
    usage = period.usage_days().values("agent_name").annotate(calls=rollup_sum("call_count"), spent=Sum("cost_sum"))
    usage = {row["agent_name"]: row for row in usage}
    rows = []
    for row in sorted(runs, key=lambda r: (-r["runs"], r["agent_name"])):
        calls = usage.pop(row["agent_name"], {"calls": 0, "spent": None})
        rows.append(
            [
                row["agent_name"],
                row["runs"],
                ratio(row["succeeded"], row["ended"]),
                row["failed"],
                _average_seconds(row["duration"], row["ended"]),
                row["items"],
                row["item_failures"],
                calls["calls"],
                money(calls["spent"]),
            ]
        )
    rows += [[agent, 0, None, 0, None, 0, 0, calls["calls"], money(calls["spent"])] for agent, calls in usage.items()]
    columns = ["agent", "runs", "success rate", "failed", "avg duration s", "items ok", "items failed", "model calls", "cost $"]
    return Report(f"Agent performance (last {days} days)", columns, rows, {"days": days, "agents": len(rows)})


TEST_JOB = Q(job_type__istartswith="test")
NOT_PASSED = Q(status__in=[RunStatus.FAILED, RunStatus.PARTIAL, RunStatus.TIMEOUT])
FILE_RESULT = "test.file"


def test_status(days: int = DEFAULT_DAYS) -> Report:
    """Test runs (runs whose job_type starts with "test"): per agent and job type, how many
    passed, and the last failure."""
    runs = Period.last(days).run_days().filter(TEST_JOB)
    groups = runs.values("agent_name", "job_type").annotate(
        runs=rollup_sum("run_count"),
        passed=rollup_sum("run_count", status=RunStatus.SUCCESS),
        failed=Sum("run_count", filter=NOT_PASSED, default=0),
        last=Max("created_at_max"),
        last_failure=Max("created_at_max", filter=NOT_PASSED),
    )
    rows = [
        [
            g["agent_name"],
            g["job_type"],
            g["runs"],
            g["passed"],
            g["failed"],
            ratio(g["passed"], g["runs"]),
            g["last"],
            g["last_failure"],
        ]
        for g in sorted(groups, key=lambda g: g["last"], reverse=True)
    ]
    totals = runs.aggregate(runs=rollup_sum("run_count"), passed=rollup_sum("run_count", status=RunStatus.SUCCESS))
    columns = ["agent", "job type", "runs", "passed", "failed", "pass rate", "last run", "last failure"]
    summary = {"days": days, **totals, "pass_rate": ratio(totals["passed"], totals["runs"])}
    return Report(f"Test runs (last {days} days)", columns, rows, summary)


def file_test_status(days: int = DEFAULT_DAYS) -> Report:
    """Per test file: its results, from run events of type "test.file" whose payload holds
    {"file": ..., "passed": true|false}."""
    period = Period.last(days)
    events = runs.events_of_type(FILE_RESULT, period.since).annotate(file=KT("payload__file"))
    failed = Q(payload__passed=False)
    groups = (
        events.values("file")
        .annotate(
            results=Count("id"),
            failures=Count("id", filter=failed),
            last=Max("timestamp"),
            last_failure=Max("timestamp", filter=failed),
        )
        .order_by("-failures", "file")
    )
    rows = [
        [g["file"], g["results"], g["failures"], ratio(g["results"] - g["failures"], g["results"]), g["last"], g["last_failure"]]
        for g in groups
    ]
    columns = ["file", "results", "failures", "pass rate", "last result", "last failure"]
    failing = sum(1 for g in rows if g[2])
    notes = [f'From run events "{FILE_RESULT}" with payload {{"file": "...", "passed": true}}.']
    return Report(
        f"Test files (last {days} days)", columns, rows, {"days": days, "files": len(rows), "with_failures": failing}, notes
    )


def feature_status() -> Report:
    """Which optional features work now: each is tried."""
    found = features()
    rows = [[feature.name, feature.status, feature.description, feature.detail] for feature in found]
    available = sum(1 for feature in found if feature.status == AVAILABLE)
    return Report("Features", ["feature", "status", "what it serves", "detail"], rows, {"available": available, "of": len(found)})
