"""The reports of `python manage.py telemetry` and /api/v1/reports/ (seed 001's CLI): each is one
or two grouped queries over the daily rollups of a period (runs.rollups; the last `days` days,
today included), returned as a Report (a table and a summary) that the command prints with rich
or as JSON and the API returns as JSON."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Avg, Count, Max, Q, Sum
from django.db.models.fields.json import KT

from core.features import AVAILABLE, features
from runs import rollups
from runs.models import TIER_ORDER, FeedbackEntry, LlmUsage, ModelPrice, ModelTier, Run, RunEvent, RunStatus, TemplateFeedback
from runs.quality import MILLION
from runs.rollups import Period

DEFAULT_DAYS = 30


@dataclass
class Report:
    title: str
    columns: list[str]
    rows: list[list[Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "summary": {name: _plain(value) for name, value in self.summary.items()},
            "rows": [{column: _plain(value) for column, value in zip(self.columns, row, strict=True)} for row in self.rows],
            "notes": self.notes,
        }


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _ratio(part: float | None, whole: float | None) -> float | None:
    return round(part / whole, 4) if part is not None and whole else None


def _money(value: Decimal | None) -> Decimal:
    return (value or Decimal(0)).quantize(Decimal("0.0001"))


def _sum(field: str, **where) -> Sum:
    """The sum of a rollup's `field` over the rows matching `where`; 0 when none do."""
    return Sum(field, filter=Q(**where), default=0)


TOKEN_SUMS = {
    "calls": _sum("call_count"),
    "input": _sum("input_tokens_sum"),
    "output": _sum("output_tokens_sum"),
    "cache_read": _sum("cache_read_tokens_sum"),
    "cache_write": _sum("cache_write_tokens_sum"),
    "spent": Sum("cost_sum"),
}
ENDED = ~Q(status=RunStatus.RUNNING)


def _priced(sums: dict[str, Any], price: ModelPrice) -> Decimal:
    """What the token sums would cost at `price`."""
    pairs = [
        (sums["input"], price.input_per_mtok),
        (sums["output"], price.output_per_mtok),
        (sums["cache_read"], price.cache_read_per_mtok),
        (sums["cache_write"], price.cache_write_per_mtok),
    ]
    return sum((Decimal(tokens or 0) * per_mtok for tokens, per_mtok in pairs), Decimal(0)) / MILLION


def baseline_price(model: str | None = None) -> ModelPrice | None:
    """The model `savings` compares against: the one named, or the priciest premium model."""
    prices = ModelPrice.objects.all()
    if model:
        return prices.filter(model=model).first()
    return prices.filter(tier=ModelTier.PREMIUM).order_by("-output_per_mtok", "-input_per_mtok").first()


def show(days: int = DEFAULT_DAYS, limit: int = 20) -> Report:
    """The latest model calls, and the period's totals."""
    period = Period.last(days)
    calls = period.usage()
    totals = period.usage_days().aggregate(**TOKEN_SUMS)
    rows = [
        [
            u.timestamp,
            u.agent_name,
            "/".join(filter(None, [u.workflow, u.stage])),
            u.model,
            u.tier,
            u.input_tokens,
            u.output_tokens,
            u.cache_read_tokens,
            _money(u.cost),
            u.latency_ms,
            u.success,
        ]
        for u in calls.order_by("-timestamp", "-id")[:limit]
    ]
    columns = ["time", "agent", "workflow/stage", "model", "tier", "input", "output", "cache read", "cost $", "latency ms", "ok"]
    summary = {
        "days": days,
        "calls": totals["calls"],
        "input_tokens": totals["input"],
        "output_tokens": totals["output"],
        "cost": _money(totals["spent"]),
    }
    return Report(f"Latest {len(rows)} model calls (last {days} days)", columns, rows, summary)


def savings(days: int = DEFAULT_DAYS, baseline_model: str | None = None) -> Report:
    """What tier routing saved: the cost of each tier's calls against the same tokens on the
    premium baseline model."""
    baseline = baseline_price(baseline_model)
    if baseline is None:
        note = f"No price for {baseline_model!r}." if baseline_model else "No premium model in the price table."
        return Report("Savings from tier routing", [], [], notes=[note + " Add one in the admin (Model prices)."])
    rows, actual_total, baseline_total = [], Decimal(0), Decimal(0)
    for group in Period.last(days).usage_days().values("tier").annotate(**TOKEN_SUMS).order_by("tier"):
        actual, would_be = _money(group["spent"]), _money(_priced(group, baseline))
        actual_total, baseline_total = actual_total + actual, baseline_total + would_be
        rows.append(
            [
                group["tier"] or "(none)",
                group["calls"],
                actual,
                would_be,
                would_be - actual,
                _ratio(float(would_be - actual), float(would_be)),
            ]
        )
    summary = {
        "days": days,
        "baseline_model": baseline.model,
        "actual_cost": actual_total,
        "baseline_cost": baseline_total,
        "saved": baseline_total - actual_total,
        "saved_share": _ratio(float(baseline_total - actual_total), float(baseline_total)),
    }
    columns = ["tier", "calls", "cost $", f"on {baseline.model} $", "saved $", "saved share"]
    return Report(f"Savings from tier routing against always {baseline.model} (last {days} days)", columns, rows, summary)


def cache_stats(days: int = DEFAULT_DAYS) -> Report:
    """Prompt caching per model: the share of input read from the cache and the money it saved
    (cache reads at the cache price instead of the input price, less the premium on writes)."""
    prices = {price.model: price for price in ModelPrice.objects.all()}
    rows, saved_total, read_total, input_total = [], Decimal(0), 0, 0
    for group in Period.last(days).usage_days().values("model").annotate(**TOKEN_SUMS).order_by("-cache_read", "model"):
        read, written, fresh = group["cache_read"], group["cache_write"], group["input"]
        price = prices.get(group["model"])
        saved = None
        if price:
            saved = _money(
                (
                    Decimal(read) * (price.input_per_mtok - price.cache_read_per_mtok)
                    - Decimal(written) * (price.cache_write_per_mtok - price.input_per_mtok)
                )
                / MILLION
            )
            saved_total += saved
        read_total, input_total = read_total + read, input_total + fresh + read
        rows.append([group["model"], group["calls"], fresh, read, written, _ratio(read, fresh + read), saved])
    summary = {"days": days, "hit_rate": _ratio(read_total, input_total), "cache_read_tokens": read_total, "saved": saved_total}
    columns = ["model", "calls", "input (uncached)", "cache read", "cache write", "hit rate", "saved $"]
    notes = [] if all(row[-1] is not None for row in rows) else ["Models without a price show no savings."]
    return Report(f"Prompt cache (last {days} days)", columns, rows, summary, notes)


def _average_seconds(total_ms: int, count: int) -> float | None:
    return round(total_ms / count / 1000, 2) if count else None


def _period_figures(period: Period) -> dict[str, Any]:
    runs = period.run_days().aggregate(
        runs=_sum("run_count"),
        succeeded=_sum("run_count", status=RunStatus.SUCCESS),
        ended=Sum("run_count", filter=ENDED, default=0),
        duration=Sum("duration_ms_sum", filter=ENDED, default=0),
        items=_sum("items_succeeded_sum"),
    )
    calls = period.usage_days().aggregate(**TOKEN_SUMS, latency=_sum("latency_ms_sum"), fallbacks=_sum("fallback_count"))
    quality = period.feedback().aggregate(avg=Avg("quality_score"))
    return {
        "runs": runs["runs"],
        "run success rate": _ratio(runs["succeeded"], runs["ended"]),
        "avg run duration s": _average_seconds(runs["duration"], runs["ended"]),
        "items succeeded": runs["items"],
        "model calls": calls["calls"],
        "tokens": calls["input"] + calls["output"],
        "cost $": _money(calls["spent"]),
        "avg latency ms": round(calls["latency"] / calls["calls"], 1) if calls["calls"] else None,
        "fallback rate": _ratio(calls["fallbacks"], calls["calls"]),
        "avg quality": round(quality["avg"], 4) if quality["avg"] is not None else None,
    }


def compare(days: int = 7) -> Report:
    """The last `days` against the `days` before them."""
    period = Period.last(days)
    before, current = _period_figures(period.before()), _period_figures(period)
    rows = []
    for name, value in current.items():
        earlier = before[name]
        change = _ratio(float(value) - float(earlier), float(earlier)) if value is not None and earlier else None
        rows.append([name, earlier, value, change])
    return Report(f"The last {days} days against the {days} before", ["metric", "before", "last", "change"], rows, {"days": days})


def agent_performance(days: int = DEFAULT_DAYS) -> Report:
    """Per agent: runs and how they ended, duration, items, model calls and cost."""
    period = Period.last(days)
    runs = (
        period.run_days()
        .values("agent_name")
        .annotate(
            runs=_sum("run_count"),
            succeeded=_sum("run_count", status=RunStatus.SUCCESS),
            failed=_sum("run_count", status__in=[RunStatus.FAILED, RunStatus.TIMEOUT]),
            ended=Sum("run_count", filter=ENDED, default=0),
            duration=Sum("duration_ms_sum", filter=ENDED, default=0),
            items=_sum("items_succeeded_sum"),
            item_failures=_sum("items_failed_sum"),
        )
    )
    usage = period.usage_days().values("agent_name").annotate(calls=_sum("call_count"), spent=Sum("cost_sum"))
    usage = {row["agent_name"]: row for row in usage}
    rows = []
    for row in sorted(runs, key=lambda r: (-r["runs"], r["agent_name"])):
        calls = usage.pop(row["agent_name"], {"calls": 0, "spent": None})
        rows.append(
            [
                row["agent_name"],
                row["runs"],
                _ratio(row["succeeded"], row["ended"]),
                row["failed"],
                _average_seconds(row["duration"], row["ended"]),
                row["items"],
                row["item_failures"],
                calls["calls"],
                _money(calls["spent"]),
            ]
        )
    rows += [[agent, 0, None, 0, None, 0, 0, calls["calls"], _money(calls["spent"])] for agent, calls in usage.items()]
    columns = ["agent", "runs", "success rate", "failed", "avg duration s", "items ok", "items failed", "model calls", "cost $"]
    return Report(f"Agent performance (last {days} days)", columns, rows, {"days": days, "agents": len(rows)})


def task_routing(days: int = DEFAULT_DAYS) -> Report:
    """Per task type: which tiers served it, how often calls failed or fell back, the cost."""
    per_tier = {f"on_{tier}": _sum("call_count", tier=tier) for tier in TIER_ORDER}
    groups = (
        Period.last(days)
        .stage_days()
        .values("task_type")
        .annotate(
            calls=_sum("call_count"), ok=_sum("ok_count"), fallbacks=_sum("fallback_count"), spent=Sum("cost_sum"), **per_tier
        )
        .order_by("-calls", "task_type")
    )
    rows = [
        [
            g["task_type"] or "(none)",
            g["calls"],
            *(_ratio(g[f"on_{tier}"], g["calls"]) for tier in TIER_ORDER),
            _ratio(g["ok"], g["calls"]),
            _ratio(g["fallbacks"], g["calls"]),
            _money(g["spent"]),
            _money(g["spent"] / g["calls"]) if g["spent"] is not None else None,
        ]
        for g in groups
    ]
    columns = [
        "task type",
        "calls",
        *(f"{tier} share" for tier in TIER_ORDER),
        "success rate",
        "fallback rate",
        "cost $",
        "$ per call",
    ]
    return Report(f"Task routing (last {days} days)", columns, rows, {"days": days})


def tier1_status(days: int = DEFAULT_DAYS) -> Report:
    """Tier 1 automation: per workflow stage, how much the cheap tier handles on its own (its
    share of calls, its success rate, how often it needed a fallback) and its quality."""
    period = Period.last(days)
    groups = (
        period.stage_days()
        .values("workflow", "stage")
        .annotate(
            calls=_sum("call_count"),
            cheap=_sum("call_count", tier=ModelTier.CHEAP),
            cheap_ok=_sum("ok_count", tier=ModelTier.CHEAP),
            fallbacks=_sum("fallback_count"),
        )
    )
    quality = {
        (row["workflow_name"], row["stage_name"]): row["avg"]
        for row in period.feedback()
        .filter(tier=ModelTier.CHEAP)
        .values("workflow_name", "stage_name")
        .annotate(avg=Avg("quality_score"))
    }
    rows = []
    for g in sorted(groups, key=lambda g: (-g["calls"], g["workflow"], g["stage"])):
        share, success = _ratio(g["cheap"], g["calls"]), _ratio(g["cheap_ok"], g["cheap"])
        automated = bool(share and share >= 0.8 and (success or 0) >= 0.95)
        avg = quality.get((g["workflow"], g["stage"]))
        rows.append(
            [
                g["workflow"] or "(none)",
                g["stage"] or "(none)",
                g["calls"],
                share,
                success,
                _ratio(g["fallbacks"], g["calls"]),
                round(avg, 4) if avg is not None else None,
                automated,
            ]
        )
    automated = sum(1 for row in rows if row[-1])
    columns = ["workflow", "stage", "calls", "cheap share", "cheap success", "fallback rate", "cheap quality", "automated"]
    notes = ["Automated: at least 80% of calls on the cheap tier, at least 95% of them successful."]
    return Report(
        f"Tier 1 automation (last {days} days)",
        columns,
        rows,
        {"days": days, "stages": len(rows), "automated": automated},
        notes,
    )


def fallback_analysis(days: int = DEFAULT_DAYS) -> Report:
    """seed 001's sonnet-opus-analysis: calls retried on a stronger model after a cheaper one
    failed: how often, where, and what they cost."""
    period = Period.last(days)
    totals = period.usage_days().aggregate(
        calls=_sum("call_count"), fallbacks=_sum("fallback_count"), spent=Sum("cost_sum"), fallback_spent=Sum("fallback_cost_sum")
    )
    groups = (
        period.stage_days()
        .values("workflow", "stage", "model")
        .annotate(calls=_sum("call_count"), fallbacks=_sum("fallback_count"), spent=Sum("fallback_cost_sum"))
        .filter(fallbacks__gt=0)
        .order_by("-fallbacks", "workflow", "stage", "model")
    )
    rows = [
        [
            g["workflow"] or "(none)",
            g["stage"] or "(none)",
            g["model"],
            g["fallbacks"],
            _ratio(g["fallbacks"], g["calls"]),
            _money(g["spent"]),
        ]
        for g in groups
    ]
    summary = {
        "days": days,
        "calls": totals["calls"],
        "fallbacks": totals["fallbacks"],
        "fallback_rate": _ratio(totals["fallbacks"], totals["calls"]),
        "fallback_cost": _money(totals["fallback_spent"]),
        "cost": _money(totals["spent"]),
        "fallback_cost_share": _ratio(float(_money(totals["fallback_spent"])), float(_money(totals["spent"]))),
    }
    columns = ["workflow", "stage", "fallback model", "fallbacks", "fallback rate", "fallback cost $"]
    return Report(f"Fallbacks from a cheaper to a stronger model (last {days} days)", columns, rows, summary)


TEST_JOB = Q(job_type__istartswith="test")
NOT_PASSED = Q(status__in=[RunStatus.FAILED, RunStatus.PARTIAL, RunStatus.TIMEOUT])
FILE_RESULT = "test.file"


def test_status(days: int = DEFAULT_DAYS) -> Report:
    """Test runs (runs whose job_type starts with "test"): per agent and job type, how many
    passed, and the last failure."""
    runs = Period.last(days).run_days().filter(TEST_JOB)
    groups = runs.values("agent_name", "job_type").annotate(
        runs=_sum("run_count"),
        passed=_sum("run_count", status=RunStatus.SUCCESS),
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
            _ratio(g["passed"], g["runs"]),
            g["last"],
            g["last_failure"],
        ]
        for g in sorted(groups, key=lambda g: g["last"], reverse=True)
    ]
    totals = runs.aggregate(runs=_sum("run_count"), passed=_sum("run_count", status=RunStatus.SUCCESS))
    columns = ["agent", "job type", "runs", "passed", "failed", "pass rate", "last run", "last failure"]
    summary = {"days": days, **totals, "pass_rate": _ratio(totals["passed"], totals["runs"])}
    return Report(f"Test runs (last {days} days)", columns, rows, summary)


def file_test_status(days: int = DEFAULT_DAYS) -> Report:
    """Per test file: its results, from run events of type "test.file" whose payload holds
    {"file": ..., "passed": true|false}."""
    period = Period.last(days)
    events = RunEvent.objects.filter(event_type=FILE_RESULT, timestamp__gte=period.since).annotate(file=KT("payload__file"))
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
        [g["file"], g["results"], g["failures"], _ratio(g["results"] - g["failures"], g["results"]), g["last"], g["last_failure"]]
        for g in groups
    ]
    columns = ["file", "results", "failures", "pass rate", "last result", "last failure"]
    failing = sum(1 for g in rows if g[2])
    notes = [f'From run events "{FILE_RESULT}" with payload {{"file": "...", "passed": true}}.']
    return Report(
        f"Test files (last {days} days)", columns, rows, {"days": days, "files": len(rows), "with_failures": failing}, notes
    )


def feature_status() -> Report:
    """Which optional features work now (seed 001's TelemetryFeatures): each is tried."""
    found = features()
    rows = [[feature.name, feature.status, feature.description, feature.detail] for feature in found]
    available = sum(1 for feature in found if feature.status == AVAILABLE)
    return Report("Features", ["feature", "status", "what it serves", "detail"], rows, {"available": available, "of": len(found)})


REPORTS: dict[str, Callable[..., Report]] = {
    "show": show,
    "savings": savings,
    "cache-stats": cache_stats,
    "compare": compare,
    "agent-performance": agent_performance,
    "task-routing": task_routing,
    "tier1-status": tier1_status,
    "test-status": test_status,
    "file-test-status": file_test_status,
    "sonnet-opus-analysis": fallback_analysis,
    "features": feature_status,
}
WITHOUT_PERIOD = {"features"}


def reset(include_runs: bool = False) -> dict[str, int]:
    """Delete LLM usage and feedback (and with `include_runs`, runs and their events); how many of each."""
    models = {"usage": LlmUsage, "feedback": FeedbackEntry, "template feedback": TemplateFeedback}
    if include_runs:
        models.update(events=RunEvent, runs=Run)
    with transaction.atomic():
        deleted = {name: model.objects.all().delete()[0] for name, model in models.items()}
        rollups.forget(include_runs)
    return deleted
