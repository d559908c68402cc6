"""/metrics: runs by status, and LLM calls, tokens and cost by model and tier."""

from __future__ import annotations

from django.db.models import Sum
from prometheus_client.core import CounterMetricFamily

from quality import rollups
from quality.models import RunDay, UsageDay


class RunMetrics:
    """/metrics: runs by status, and LLM calls, tokens and cost by model and tier (from the daily
    rollups, so over every day still kept)."""

    def collect(self):
        rollups.refresh()
        runs = CounterMetricFamily("telemetry_runs", "Runs recorded, by status", labels=["status"])
        for status, count in RunDay.objects.values_list("status").annotate(n=Sum("run_count")).order_by("status"):
            runs.add_metric([status], count)
        yield runs
        usage = UsageDay.objects.values("model", "tier").annotate(
            calls=Sum("call_count"),
            cost=Sum("cost_sum"),
            input=Sum("input_tokens_sum"),
            output=Sum("output_tokens_sum"),
            cache_read=Sum("cache_read_tokens_sum"),
            cache_write=Sum("cache_write_tokens_sum"),
        )
        calls = CounterMetricFamily("telemetry_llm_calls", "LLM calls, by model and tier", labels=["model", "tier"])
        cost = CounterMetricFamily(
            "telemetry_llm_cost_dollars", "LLM cost in dollars, by model and tier", labels=["model", "tier"]
        )
        tokens = CounterMetricFamily(
            "telemetry_llm_tokens", "LLM tokens, by model, tier and kind", labels=["model", "tier", "kind"]
        )
        for row in usage.order_by("model", "tier"):
            labels = [row["model"], row["tier"] or "none"]
            calls.add_metric(labels, row["calls"])
            cost.add_metric(labels, float(row["cost"]))
            for kind in ("input", "output", "cache_read", "cache_write"):
                tokens.add_metric([*labels, kind], row[kind])
        yield from (calls, cost, tokens)
