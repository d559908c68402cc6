"""The shapes of spans: as agents send them (the SDK's span items; the OTLP receiver makes these
too) and as the API returns a trace."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from core.schemas import Identifier, Label, Name, Strict, Timestamp
from traces.models import SpanKind, SpanStatus


def _not_all_zero(value: str) -> str:
    if not value.strip("0"):
        raise ValueError("an id of zeros is invalid")
    return value


TraceId = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{32}$", to_lower=True), AfterValidator(_not_all_zero)]
SpanId = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{16}$", to_lower=True), AfterValidator(_not_all_zero)]
MAX_SPAN_EVENTS = 128


class SpanEventIn(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    timestamp: Timestamp
    attributes: dict[str, Any] = Field(default_factory=dict)


class SpanIn(Strict):
    """A finished span (kind "span" in an ingest batch; the OTLP receiver makes these too). Ids
    are W3C's: 32 and 16 lowercase hex digits, not all zero."""

    trace_id: TraceId
    span_id: SpanId
    parent_span_id: SpanId | Literal[""] = ""
    name: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    span_kind: SpanKind = SpanKind.INTERNAL
    status: SpanStatus = SpanStatus.UNSET
    status_message: Annotated[str, StringConstraints(max_length=2000)] = ""
    start_time: Timestamp
    end_time: Timestamp
    agent_name: Name
    service_name: Label = ""
    attributes: dict[str, Any] = Field(default_factory=dict)
    events: list[SpanEventIn] = Field(default_factory=list, max_length=MAX_SPAN_EVENTS)
    run_event_id: Identifier | None = None

    @model_validator(mode="after")
    def _ends_after_it_starts(self) -> SpanIn:
        if self.end_time < self.start_time:
            raise ValueError("end_time is before start_time")
        return self

    @property
    def event_id(self) -> str:
        return self.trace_id + self.span_id


class SpanOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    span_kind: str
    status: str
    status_message: str
    start_time: datetime
    end_time: datetime
    duration_ms: float
    agent_name: str
    service_name: str
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    run_event_id: str | None = Field(None, description="The run's event_id, when the span belongs to one")


class TraceOut(BaseModel):
    trace_id: str
    spans: list[SpanOut] = Field(description="Oldest first")


class SpanItem(SpanIn):
    kind: Literal["span"]
