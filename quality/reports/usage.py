"""Reports on LLM usage: the latest calls, what tier routing saved, prompt caching, routing by task
type, the cheap tier's share, fallbacks."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Avg, Sum

from quality.models import TIER_ORDER, ModelPrice, ModelTier
from quality.reports.base import DEFAULT_DAYS, TOKEN_SUMS, Report, baseline_price, money, priced, ratio, rollup_sum
from quality.rollups import Period
from quality.services import MILLION, SNAPSHOT


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
            money(u.cost),
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
        "cost": money(totals["spent"]),
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
        actual, would_be = money(group["spent"]), money(priced(group, baseline))
        actual_total, baseline_total = actual_total + actual, baseline_total + would_be
        rows.append(
            [
                group["tier"] or "(none)",
                group["calls"],
                actual,
                would_be,
                would_be - actual,
                ratio(float(would_be - actual), float(would_be)),
            ]
        )
    summary = {
        "days": days,
        "baseline_model": baseline.model,
        "actual_cost": actual_total,
        "baseline_cost": baseline_total,
        "saved": baseline_total - actual_total,
        "saved_share": ratio(float(baseline_total - actual_total), float(baseline_total)),
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
        price = prices.get(group["model"]) or prices.get(SNAPSHOT.sub("", group["model"]))
        saved = None
        if price:
            saved = money(
                (
                    Decimal(read) * (price.input_per_mtok - price.cache_read_per_mtok)
                    - Decimal(written) * (price.cache_write_per_mtok - price.input_per_mtok)
                )
                / MILLION
            )
            saved_total += saved
        read_total, input_total = read_total + read, input_total + fresh + read
        rows.append([group["model"], group["calls"], fresh, read, written, ratio(read, fresh + read), saved])
    summary = {"days": days, "hit_rate": ratio(read_total, input_total), "cache_read_tokens": read_total, "saved": saved_total}
    columns = ["model", "calls", "input (uncached)", "cache read", "cache write", "hit rate", "saved $"]
    notes = [] if all(row[-1] is not None for row in rows) else ["Models without a price show no savings."]
    return Report(f"Prompt cache (last {days} days)", columns, rows, summary, notes)


def task_routing(days: int = DEFAULT_DAYS) -> Report:
    """Per task type: which tiers served it, how often calls failed or fell back, the cost."""
    per_tier = {f"on_{tier}": rollup_sum("call_count", tier=tier) for tier in TIER_ORDER}
    groups = (
        Period.last(days)
        .stage_days()
        .values("task_type")
        .annotate(
            calls=rollup_sum("call_count"),
            ok=rollup_sum("ok_count"),
            fallbacks=rollup_sum("fallback_count"),
            spent=Sum("cost_sum"),
            **per_tier,
        )
        .order_by("-calls", "task_type")
    )
    rows = [
        [
            g["task_type"] or "(none)",
            g["calls"],
            *(ratio(g[f"on_{tier}"], g["calls"]) for tier in TIER_ORDER),
            ratio(g["ok"], g["calls"]),
            ratio(g["fallbacks"], g["calls"]),
            money(g["spent"]),
            money(g["spent"] / g["calls"]) if g["spent"] is not None else None,
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
            calls=rollup_sum("call_count"),
            cheap=rollup_sum("call_count", tier=ModelTier.CHEAP),
            cheap_ok=rollup_sum("ok_count", tier=ModelTier.CHEAP),
            fallbacks=rollup_sum("fallback_count"),
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
        share, success = ratio(g["cheap"], g["calls"]), ratio(g["cheap_ok"], g["cheap"])
        automated = bool(share and share >= 0.8 and (success or 0) >= 0.95)
        avg = quality.get((g["workflow"], g["stage"]))
        rows.append(
            [
                g["workflow"] or "(none)",
                g["stage"] or "(none)",
                g["calls"],
                share,
                success,
                ratio(g["fallbacks"], g["calls"]),
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
    """sonnet-opus-analysis: calls retried on a stronger model after a cheaper one
    failed: how often, where, and what they cost."""
    period = Period.last(days)
    totals = period.usage_days().aggregate(
        calls=rollup_sum("call_count"),
        fallbacks=rollup_sum("fallback_count"),
        spent=Sum("cost_sum"),
        fallback_spent=Sum("fallback_cost_sum"),
    )
    groups = (
        period.stage_days()
        .values("workflow", "stage", "model")
        .annotate(calls=rollup_sum("call_count"), fallbacks=rollup_sum("fallback_count"), spent=Sum("fallback_cost_sum"))
        .filter(fallbacks__gt=0)
        .order_by("-fallbacks", "workflow", "stage", "model")
    )
    rows = [
        [
            g["workflow"] or "(none)",
            g["stage"] or "(none)",
            g["model"],
            g["fallbacks"],
            ratio(g["fallbacks"], g["calls"]),
            money(g["spent"]),
        ]
        for g in groups
    ]
    summary = {
        "days": days,
        "calls": totals["calls"],
        "fallbacks": totals["fallbacks"],
        "fallback_rate": ratio(totals["fallbacks"], totals["calls"]),
        "fallback_cost": money(totals["fallback_spent"]),
        "cost": money(totals["spent"]),
        "fallback_cost_share": ratio(float(money(totals["fallback_spent"])), float(money(totals["spent"]))),
    }
    columns = ["workflow", "stage", "fallback model", "fallbacks", "fallback rate", "fallback cost $"]
    return Report(f"Fallbacks from a cheaper to a stronger model (last {days} days)", columns, rows, summary)
