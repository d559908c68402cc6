"""LLM usage and quality feedback: storing them (usage priced from the price table) and what they
add up to (quality statistics, tier recommendations, template confidence), computed by the
database in one aggregate query each."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Avg, Count, Max, Min, Q
from django.utils import timezone

from core.batch import Batch, MayActAs
from quality.models import TIER_ORDER, ChangedDay, FeedbackEntry, LlmUsage, ModelPrice, TemplateFeedback
from quality.schemas import FeedbackIn, QualityStats, TemplateFeedbackIn, TierRecommendation, UsageIn
from runs import selectors as runs

RECENT = timedelta(days=7)  # a stage's recent trend: the last week against what came before
MIN_SAMPLES = 10  # a tier with fewer ratings is not judged
HOLDS = 0.8  # a tier whose average quality is at least this holds
TOLERANCE = 0.05  # a cheaper tier may score this much below the current one and still hold
DROPS = 0.6  # below this average the current tier does not do the job
MILLION = Decimal(1_000_000)
SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")  # gpt-4o-mini-2024-07-18, claude-sonnet-4-20250514


def prices_of(models: set[str]) -> dict[str, ModelPrice]:
    """Each model's price: its own row, else (a dated snapshot, as providers answer) its alias's."""
    aliases = {model: SNAPSHOT.sub("", model) for model in models}
    rows = ModelPrice.objects.in_bulk(set(models) | set(aliases.values()), field_name="model")
    return {model: rows.get(model) or rows[alias] for model, alias in aliases.items() if model in rows or alias in rows}


def cost_of(item: UsageIn, price: ModelPrice | None) -> Decimal:
    """The cost sent, or the tokens at the model's price (0 for a model not in the table)."""
    if item.cost is not None:
        return item.cost
    if price is None:
        return Decimal(0)
    tokens_and_prices = [
        (item.input_tokens, price.input_per_mtok),
        (item.output_tokens, price.output_per_mtok),
        (item.cache_read_tokens, price.cache_read_per_mtok),
        (item.cache_write_tokens, price.cache_write_per_mtok),
    ]
    return sum((tokens * per_mtok for tokens, per_mtok in tokens_and_prices), Decimal(0)) / MILLION


def ingest_usage(items: list, may_act_as: MayActAs) -> Batch:
    """LLM usage records; each may name its run by `run_event_id`."""
    batch = Batch(items, UsageIn)
    batch.reject_forbidden_agents(may_act_as)
    named = {item.run_event_id for item in batch.valid.values() if item.run_event_id}
    found = runs.by_event_id(named)
    for index, item in list(batch.valid.items()):
        if item.run_event_id and item.run_event_id not in found:
            batch.reject(index, "run_not_found", f"No run has event_id '{item.run_event_id}'.")
    prices = prices_of({item.model for item in batch.valid.values()})

    def row(item: UsageIn) -> dict[str, Any]:
        price = prices.get(item.model)
        fields = item.model_dump(exclude={"run_event_id", "cost"})
        fields["tier"] = item.tier or (price.tier if price else "")
        fields["cost"] = cost_of(item, price)
        fields["run_id"] = found[item.run_event_id].pk if item.run_event_id else None
        return fields

    batch.store(LlmUsage, row, on_stored=lambda stored: ChangedDay.note(*(call["timestamp"] for call in stored)))
    return batch


def ingest_feedback(items: list, may_act_as: MayActAs) -> Batch:
    batch = Batch(items, FeedbackIn)
    batch.reject_forbidden_agents(may_act_as)
    batch.store(FeedbackEntry, lambda item: item.model_dump())
    return batch


def ingest_template_feedback(items: list, may_act_as: MayActAs) -> Batch:
    batch = Batch(items, TemplateFeedbackIn)
    batch.reject_forbidden_agents(may_act_as)
    batch.store(TemplateFeedback, lambda item: item.model_dump())
    return batch


def quality_stats(workflow_name: str, stage_name: str, tier: str | None = None) -> QualityStats | None:
    """None when the stage has no feedback (of that tier)."""
    entries = FeedbackEntry.objects.filter(workflow_name=workflow_name, stage_name=stage_name)
    if tier:
        entries = entries.filter(tier=tier)
    since = timezone.now() - RECENT
    found = entries.aggregate(
        avg=Avg("quality_score"),
        low=Min("quality_score"),
        high=Max("quality_score"),
        count=Count("id"),
        recent=Avg("quality_score", filter=Q(timestamp__gte=since)),
        earlier=Avg("quality_score", filter=Q(timestamp__lt=since)),
    )
    if not found["count"]:
        return None
    trend = found["recent"] - found["earlier"] if found["recent"] is not None and found["earlier"] is not None else 0.0
    return QualityStats(
        workflow_name=workflow_name,
        stage_name=stage_name,
        tier=tier or None,
        avg_quality=found["avg"],
        min_quality=found["low"],
        max_quality=found["high"],
        sample_count=found["count"],
        recent_trend=trend,
    )


def _evidence(samples: int) -> float:
    return round(min(1.0, samples / (2 * MIN_SAMPLES)), 2)


def recommend_tier(workflow_name: str, stage_name: str, current_tier: str) -> TierRecommendation:
    """A cheaper tier whose quality holds (at least HOLDS, and within TOLERANCE of the current
    tier) over MIN_SAMPLES ratings; a stronger one when the current tier averages below DROPS;
    else the current tier."""
    rows = (
        FeedbackEntry.objects.filter(workflow_name=workflow_name, stage_name=stage_name)
        .values("tier")
        .annotate(avg=Avg("quality_score"), count=Count("id"))
    )
    tiers = {row["tier"]: {"avg_quality": row["avg"], "sample_count": row["count"]} for row in rows}

    def answer(tier: str, reason: str, samples: int) -> TierRecommendation:
        return TierRecommendation(
            workflow_name=workflow_name,
            stage_name=stage_name,
            current_tier=current_tier,
            recommended_tier=tier,
            reason=reason,
            confidence=_evidence(samples),
            tiers=tiers,
        )

    current = tiers.get(current_tier, {"avg_quality": 0.0, "sample_count": 0})
    if current["sample_count"] < MIN_SAMPLES:
        return answer(current_tier, f"Only {current['sample_count']} ratings of {current_tier}; {MIN_SAMPLES} are needed.", 0)
    position = TIER_ORDER.index(current_tier)
    if current["avg_quality"] < DROPS and position + 1 < len(TIER_ORDER):
        stronger = TIER_ORDER[position + 1]
        reason = f"{current_tier} averages {current['avg_quality']:.2f}, below {DROPS}: use {stronger}."
        return answer(stronger, reason, current["sample_count"])
    for cheaper in TIER_ORDER[:position]:
        found = tiers.get(cheaper)
        if (
            found
            and found["sample_count"] >= MIN_SAMPLES
            and found["avg_quality"] >= HOLDS
            and found["avg_quality"] >= current["avg_quality"] - TOLERANCE
        ):
            reason = (
                f"{cheaper} holds quality: {found['avg_quality']:.2f} over {found['sample_count']} ratings "
                f"against {current['avg_quality']:.2f} for {current_tier}."
            )
            return answer(cheaper, reason, found["sample_count"])
    reason = f"{current_tier} averages {current['avg_quality']:.2f}; no cheaper tier has shown it holds quality."
    return answer(current_tier, reason, current["sample_count"])


def template_confidence(template_id: str) -> dict[str, Any]:
    """good / (good + bad) of a template's ratings; 0.5 (no opinion) before any."""
    found = TemplateFeedback.objects.filter(template_id=template_id).aggregate(
        good=Count("id", filter=Q(good=True)), total=Count("id")
    )
    confidence = found["good"] / found["total"] if found["total"] else 0.5
    return {"template_id": template_id, "good": found["good"], "bad": found["total"] - found["good"], "confidence": confidence}
