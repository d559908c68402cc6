"""The shapes of metric points as agents send them, and of a metric query and its answer."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, RootModel, StringConstraints, model_validator

from core.schemas import Identifier, Label, Name, Strict, Timestamp
from metrics.models import MetricType

MetricName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]{0,199}$")]
LabelName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]{0,99}$")]
MAX_LABELS = 10
RESERVED_LABELS = {"le", "quantile"}  # Prometheus's own, in histograms and summaries
# json.dumps with these options, without making an encoder per call (a third of its time).
_labels_json = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


class MetricIn(Strict):
    """One metric point (kind "metric" in an ingest batch): a counter's
    increment, a gauge's value, or one observation of a histogram."""

    event_id: Identifier = Field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: Timestamp = Field(default_factory=lambda: datetime.now(UTC))
    agent_name: Name
    name: MetricName
    metric_type: MetricType
    value: Annotated[float, Field(allow_inf_nan=False)]
    labels: dict[LabelName, Label] = Field(default_factory=dict, max_length=MAX_LABELS)

    @cached_property
    def series_key(self) -> tuple[str, str]:
        """The metric's name and its labels as sorted JSON: what identifies its series."""
        return self.name, _labels_json(self.labels)

    @model_validator(mode="after")
    def _sound(self) -> MetricIn:
        if self.metric_type == MetricType.COUNTER and self.value < 0:
            raise ValueError("a counter's value is an increment: at least 0")
        reserved = sorted(name for name in self.labels if name in RESERVED_LABELS or name.startswith("__"))
        if reserved:
            raise ValueError(f"reserved label names: {', '.join(reserved)}")
        return self


INTERVAL_UNITS = {"m": 60, "h": 3600, "d": 86400}


def _interval_seconds(value: Any) -> Any:
    """'5m', '1h', '1d' (at least a minute: queries read minute rollups) as seconds."""
    if isinstance(value, str) and value[:-1].isdigit() and value[-1:] in INTERVAL_UNITS:
        return int(value[:-1]) * INTERVAL_UNITS[value[-1]]
    raise ValueError("an interval like 1m, 5m, 1h or 1d")


def _labels_filter(value: Any) -> Any:
    """'agent_type:coder,phase:plan' as {"agent_type": "coder", "phase": "plan"}."""
    if isinstance(value, str):
        pairs = [pair.partition(":") for pair in value.split(",") if pair]
        if any(not name or not sep for name, sep, _ in pairs):
            raise ValueError("label:value pairs separated by commas")
        return {name: label_value for name, _, label_value in pairs}
    return value


class MetricQuery(Strict):
    """GET /api/v1/metrics/query: a metric over time."""

    name: MetricName
    labels: Annotated[dict[LabelName, str], BeforeValidator(_labels_filter)] = Field(default_factory=dict)
    start: Timestamp | None = None
    end: Timestamp | None = None
    interval: Annotated[int, BeforeValidator(_interval_seconds), Field(ge=60, le=31 * 86400)] = 300
    aggregation: Literal["avg", "sum", "min", "max", "count", "rate"] = "avg"
    window: Annotated[int, Field(ge=1, le=1000)] = 5
    k: Annotated[float, Field(gt=0, le=100)] = 3.0


class TimedValue(BaseModel):
    time: str
    value: float


class Anomaly(TimedValue):
    deviations: float = Field(description="How many standard deviations from the mean")


class MetricQueryOut(BaseModel):
    name: str
    labels: dict[str, str]
    series: int = Field(description="How many label sets matched")
    start: str
    end: str
    interval_seconds: int
    aggregation: str
    points: list[TimedValue] = Field(description="One per interval that has points (UTC, aligned to the interval)")
    summary: dict[str, float | int | None] = Field(description="Of the raw points: count, sum, avg, min, max, p50, p95, p99")
    moving_average: list[TimedValue]
    anomalies: list[Anomaly]


class MetricInList(RootModel[list[MetricIn]]):
    pass


class MetricItem(MetricIn):
    kind: Literal["metric"]
