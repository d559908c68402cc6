"""The shapes of LLM usage and feedback as agents send them, and of the quality figures and
reports the API returns."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, RootModel, StringConstraints

from core.schemas import Count, Identifier, JsonObject, Label, Name, Strict, Timestamp, Tokens, none_to_blank
from quality.models import ModelTier


class UsageIn(Strict):
    """One model call (the SDK's record_llm_usage; kind "usage" in an ingest batch). Without a
    cost, it is priced from the price table; without a tier, the table's tier for the model."""

    event_id: Identifier = Field(default_factory=lambda: str(uuid.uuid4()))
    run_event_id: Identifier | None = None
    timestamp: Timestamp = Field(default_factory=lambda: datetime.now(UTC))
    agent_name: Name
    workflow: Label = ""
    stage: Label = ""
    task_type: Label = ""
    provider: Annotated[str, BeforeValidator(none_to_blank), StringConstraints(max_length=100)] = ""
    model: Name
    tier: ModelTier | None = None
    input_tokens: Tokens = 0
    output_tokens: Tokens = 0
    cache_read_tokens: Tokens = 0
    cache_write_tokens: Tokens = 0
    cost: Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=8)] | None = None
    latency_ms: Count = 0
    success: bool = True
    fallback: bool = False


class FeedbackIn(Strict):
    """The quality (0-1) of one response of a workflow stage, on a model tier."""

    event_id: Identifier = Field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: Timestamp = Field(default_factory=lambda: datetime.now(UTC))
    agent_name: Label = ""
    workflow_name: Name
    stage_name: Name
    tier: ModelTier
    quality_score: Annotated[float, Field(ge=0, le=1)]
    metadata: JsonObject = None


class TemplateFeedbackIn(Strict):
    """A good or bad rating of a template."""

    event_id: Identifier = Field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: Timestamp = Field(default_factory=lambda: datetime.now(UTC))
    agent_name: Label = ""
    template_id: Name
    good: bool


class UsageInList(RootModel[list[UsageIn]]):
    pass


class FeedbackInList(RootModel[list[FeedbackIn]]):
    pass


class TemplateFeedbackInList(RootModel[list[TemplateFeedbackIn]]):
    pass


class StageQuery(Strict):
    workflow_name: Name
    stage_name: Name
    tier: ModelTier | None = None


class RecommendationQuery(Strict):
    workflow_name: Name
    stage_name: Name
    current_tier: ModelTier


class TemplateQuery(Strict):
    template_id: Name


class QualityStats(BaseModel):
    """How good a workflow stage's responses have been (of one tier, or of all): runs.quality
    computes it, the API returns it."""

    workflow_name: str
    stage_name: str
    tier: str | None
    avg_quality: float
    min_quality: float
    max_quality: float
    sample_count: int
    recent_trend: float = Field(description="The last week's average minus the earlier average (0 without both)")


class TierRecommendation(BaseModel):
    """Which tier a workflow stage should use, why, and how sure."""

    workflow_name: str
    stage_name: str
    current_tier: str
    recommended_tier: str
    reason: str
    confidence: float = Field(description="0-1, from the number of ratings behind the recommendation")
    tiers: dict[str, dict[str, float | int]] = Field(description="Per tier with ratings: avg_quality and sample_count")


class ReportQuery(Strict):
    days: Annotated[int, Field(ge=1, le=3650)] | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] | None = None
    baseline_model: Name | None = None


class ReportOut(BaseModel):
    title: str
    summary: dict[str, Any]
    rows: list[dict[str, Any]] = Field(description="One object per row, keyed by column")
    notes: list[str]


class TemplateConfidenceOut(BaseModel):
    template_id: str
    good: int
    bad: int
    confidence: float = Field(description="good / (good + bad); 0.5 before any rating")


class UsageItem(UsageIn):
    kind: Literal["usage"]


class FeedbackItem(FeedbackIn):
    kind: Literal["feedback"]


class TemplateFeedbackItem(TemplateFeedbackIn):
    kind: Literal["template_feedback"]
