"""Quality feedback (FeedbackLoop): rate responses per workflow stage and model tier,
ask which tier a stage should use, rate templates.

Ratings are recorded like runs: spooled and sent in the background, so `record_*` never waits.
The questions (`get_quality_stats`, `recommend_tier`, `get_template_confidence`, and their `a`
forms to await) ask the server;
the client delivers its own ratings first, so the answers include those just recorded.
"""

from __future__ import annotations

import enum
import logging
import math
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from telemetry_client.api import ServerApi
from telemetry_client.client import TelemetryClient
from telemetry_client.common import never_raises, now
from telemetry_client.process import UsesClient
from telemetry_client.transport import Ask, Steps

logger = logging.getLogger("telemetry_client")


class ModelTier(str, enum.Enum):
    """How capable (and costly) a model is, cheapest first."""

    CHEAP = "cheap"
    CAPABLE = "capable"
    PREMIUM = "premium"


def _tier(value: ModelTier | str) -> str:
    return ModelTier(value).value


@dataclass
class FeedbackEntry:
    """The quality (0-1) of one LLM response of a workflow stage."""

    workflow_name: str
    stage_name: str
    tier: str
    quality_score: float
    metadata: dict[str, Any] = field(default_factory=dict)
    feedback_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "timestamp": self.timestamp.isoformat()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeedbackEntry:
        timestamp = data.get("timestamp")
        return cls(
            workflow_name=data["workflow_name"],
            stage_name=data["stage_name"],
            tier=data["tier"],
            quality_score=float(data["quality_score"]),
            metadata=data.get("metadata") or {},
            feedback_id=data.get("feedback_id") or data.get("event_id") or str(uuid.uuid4()),
            timestamp=datetime.fromisoformat(timestamp) if timestamp else datetime.now(timezone.utc),
        )


@dataclass
class QualityStats:
    """How good a stage's responses have been: average, range, samples, and the recent trend
    (the last week's average minus the earlier one)."""

    workflow_name: str
    stage_name: str
    tier: str | None
    avg_quality: float
    min_quality: float
    max_quality: float
    sample_count: int
    recent_trend: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityStats:
        fields: dict[str, Any] = {name: data.get(name) for name in cls.__dataclass_fields__}
        return cls(**fields)


@dataclass
class TierRecommendation:
    """Which tier a stage should use, why, and how sure (0-1)."""

    workflow_name: str
    stage_name: str
    current_tier: str
    recommended_tier: str
    reason: str
    confidence: float
    tiers: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TierRecommendation:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


class FeedbackLoop(UsesClient):
    """Quality feedback through `memory` (a TelemetryClient; None: the process's client)."""

    def __init__(self, memory: TelemetryClient | None = None):
        super().__init__(memory)
        self._api = ServerApi(self._memory, "/api/v1/feedback")

    @never_raises(default="")
    def record_feedback(
        self,
        workflow_name: str,
        stage_name: str,
        tier: ModelTier | str,
        quality_score: float,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Record a rating; returns its id ("" when refused: a score outside 0-1 or an unknown tier)."""
        if not isinstance(quality_score, int | float) or math.isnan(quality_score) or not 0 <= quality_score <= 1:
            logger.warning("telemetry: record_feedback() ignoring quality_score=%r (must be 0 to 1)", quality_score)
            return ""
        entry = FeedbackEntry(workflow_name, stage_name, _tier(tier), float(quality_score), metadata or {})
        record = {**entry.to_dict(), "kind": "feedback", "event_id": entry.feedback_id, "timestamp": now()}
        del record["feedback_id"]
        return entry.feedback_id if self.memory._record(record) else ""

    @never_raises()
    def get_quality_stats(self, workflow_name: str, stage_name: str, tier: ModelTier | str | None = None) -> QualityStats | None:
        """None when the stage has no ratings (of that tier), or the server could not answer."""
        return self._api.run(self._stats(workflow_name, stage_name, tier))

    @never_raises()
    async def aget_quality_stats(
        self, workflow_name: str, stage_name: str, tier: ModelTier | str | None = None
    ) -> QualityStats | None:
        return await self._api.arun(self._stats(workflow_name, stage_name, tier))

    def _stats(self, workflow_name: str, stage_name: str, tier: ModelTier | str | None) -> Steps[QualityStats | None]:
        params = {"workflow_name": workflow_name, "stage_name": stage_name, "tier": None if tier is None else _tier(tier)}
        found = yield Ask("GET", "/stats", params=params)
        return QualityStats.from_dict(found) if found else None

    @never_raises()
    def recommend_tier(self, workflow_name: str, stage_name: str, current_tier: ModelTier | str) -> TierRecommendation:
        """The server's recommendation; without an answer, stay on `current_tier` (confidence 0)."""
        return self._api.run(self._recommending(workflow_name, stage_name, current_tier))

    @never_raises()
    async def arecommend_tier(self, workflow_name: str, stage_name: str, current_tier: ModelTier | str) -> TierRecommendation:
        return await self._api.arun(self._recommending(workflow_name, stage_name, current_tier))

    def _recommending(self, workflow_name: str, stage_name: str, current_tier: ModelTier | str) -> Steps[TierRecommendation]:
        current = _tier(current_tier)
        params = {"workflow_name": workflow_name, "stage_name": stage_name, "current_tier": current}
        found = yield Ask("GET", "/recommendation", params=params)
        if not found:
            return TierRecommendation(workflow_name, stage_name, current, current, "No answer from the telemetry server.", 0.0)
        return TierRecommendation.from_dict(found)

    @never_raises(default="")
    def record_template_feedback(self, template_id: str, good: bool) -> str:
        """Rate a template good or bad; returns the rating's id."""
        event_id = str(uuid.uuid4())
        record = {
            "kind": "template_feedback",
            "event_id": event_id,
            "template_id": template_id,
            "good": bool(good),
            "timestamp": now(),
        }
        return event_id if self.memory._record(record) else ""

    @never_raises(default=0.5)
    def get_template_confidence(self, template_id: str) -> float:
        """good / (good + bad) of the template's ratings; 0.5 before any (or without an answer)."""
        return self._api.run(self._confidence(template_id))

    @never_raises(default=0.5)
    async def aget_template_confidence(self, template_id: str) -> float:
        return await self._api.arun(self._confidence(template_id))

    def _confidence(self, template_id: str) -> Steps[float]:
        found = yield Ask("GET", "/templates/confidence", params={"template_id": template_id})
        return float(found["confidence"]) if found else 0.5
