"""The shapes the runs API accepts and returns (pydantic: one lean validator for single and batch).

String lengths come from the model's columns; the summaries have limits of their own (SUMMARY_LIMITS).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
    create_model,
)

from core.schemas import (
    Count,
    Identifier,
    JsonObject,
    Milliseconds,
    Strict,
    Timestamp,
    none_to_blank,
)
from runs.models import CommitSource, Run, RunStatus

# Older clients (local-telemetry) send these; we store the canonical value.
STATUS_ALIASES = {"failure": "failed", "completed": "success", "succeeded": "success"}
SUMMARY_LIMITS = {"error_summary": 500, "output_summary": 1000, "error_details": 5000, "input_summary": 5000}


def _canonical_status(value: Any) -> Any:
    return STATUS_ALIASES.get(value, value) if isinstance(value, str) else value


def text(field: str) -> Any:
    """A string for `field`, no longer than its column (or its summary limit); null means blank."""
    limit = SUMMARY_LIMITS.get(field) or Run._meta.get_field(field).max_length
    return Annotated[str, BeforeValidator(none_to_blank), StringConstraints(max_length=limit)]


Status = Annotated[RunStatus, BeforeValidator(_canonical_status)]


class RunIn(Strict):
    """A run as agents send it (POST /api/v1/runs and each item of the batch)."""

    event_id: Identifier
    run_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    agent_name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    job_type: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    start_time: Timestamp
    created_at: Timestamp | None = None
    end_time: Timestamp | None = None
    status: Status = RunStatus.RUNNING
    duration_ms: Annotated[Milliseconds, BeforeValidator(lambda v: 0 if v is None else v)] = 0
    items_discovered: Count = 0
    items_succeeded: Count = 0
    items_failed: Count = 0
    items_skipped: Count = 0
    parent_run_id: text("parent_run_id") = ""
    agent_owner: text("agent_owner") = ""
    trigger_type: text("trigger_type") = ""
    input_summary: text("input_summary") = ""
    output_summary: text("output_summary") = ""
    error_summary: text("error_summary") = ""
    error_details: text("error_details") = ""
    source_ref: text("source_ref") = ""
    target_ref: text("target_ref") = ""
    metrics_json: JsonObject = None
    context_json: JsonObject = None
    insight_id: text("insight_id") = ""
    product: text("product") = ""
    product_family: text("product_family") = ""
    platform: text("platform") = ""
    subdomain: text("subdomain") = ""
    website: text("website") = ""
    website_section: text("website_section") = ""
    item_name: text("item_name") = ""
    git_repo: text("git_repo") = ""
    git_branch: text("git_branch") = ""
    git_run_tag: text("git_run_tag") = ""
    git_commit_hash: text("git_commit_hash") = ""
    git_commit_source: Annotated[CommitSource | None, BeforeValidator(lambda v: v or None)] = None
    git_commit_author: text("git_commit_author") = ""
    git_commit_timestamp: Timestamp | None = None
    host: text("host") = ""
    environment: text("environment") = ""

    def model_fields_for_db(self) -> dict[str, Any]:
        fields = self.model_dump(exclude_none=True)
        fields.setdefault("git_commit_source", "")
        for nullable in ("metrics_json", "context_json", "end_time", "git_commit_timestamp"):
            fields.setdefault(nullable, None)
        if self.created_at is None:
            fields.pop("created_at", None)
        return fields


# What identifies a run; everything else may still change until the run ends.
RUN_IDENTITY = {"event_id", "run_id", "agent_name", "job_type", "start_time", "created_at"}

RunEnd = create_model(
    "RunEnd",
    __base__=Strict,
    __doc__="How a run ended (the SDK's end_run): the run's event_id and any of its non-identity fields.",
    event_id=(Identifier, ...),
    **{name: (field.annotation, field) for name, field in RunIn.model_fields.items() if name not in RUN_IDENTITY},
)


class RunOut(RunIn):
    """A stored run as the API returns it."""

    model_config = ConfigDict(extra="ignore", from_attributes=True, use_enum_values=True)

    id: int
    created_at: datetime
    updated_at: datetime
    git_commit_source: str = ""
    commit_url: str | None = None
    repo_url: str | None = None


class ForwardedOut(BaseModel):
    """Where a run's latest announcement went: one channel that forwards it."""

    channel: str
    event_type: Literal["run.started", "run.ended"]
    status: Literal["pending", "delivered", "failed", "not_forwarded"]
    delivered_at: datetime | None
    attempts: int
    delivery_id: int | None


class RunDetailOut(RunOut):
    """One run, with where it was forwarded (GET /api/v1/runs/{event_id})."""

    deliveries: list[ForwardedOut] = []


def run_json(run: Run) -> dict[str, Any]:
    return RunOut.model_validate(run).model_dump(mode="json")


class RunPatch(Strict):
    """PATCH /api/v1/runs/{event_id}: exactly the 11 editable fields. Null clears a
    text, time or JSON field; status and counts cannot be null."""

    status: Status = None
    end_time: Timestamp | None = None
    duration_ms: Milliseconds = None
    error_summary: text("error_summary") = None
    error_details: text("error_details") = None
    output_summary: text("output_summary") = None
    items_succeeded: Count = None
    items_failed: Count = None
    items_skipped: Count = None
    metrics_json: JsonObject = None
    context_json: JsonObject = None

    def changes(self) -> dict[str, Any]:
        return self.model_dump(include=self.model_fields_set)


class CommitIn(Strict):
    """POST /api/v1/runs/{event_id}/associate-commit."""

    commit_hash: Annotated[str, StringConstraints(min_length=7, max_length=40, pattern=r"^[0-9a-fA-F]+$")]
    commit_source: CommitSource
    commit_author: text("git_commit_author") = ""
    commit_timestamp: Timestamp | None = None


class CommitItem(CommitIn):
    """A commit association inside an ingest batch: `event_id` names the run."""

    event_id: Identifier


class EventIn(Strict):
    """An event inside a run (`log_event`). `event_id` makes retries idempotent."""

    event_id: Identifier = Field(default_factory=lambda: str(uuid.uuid4()))
    event_type: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    timestamp: Timestamp = Field(default_factory=lambda: datetime.now(UTC))
    payload: Any = None


class BatchEventIn(EventIn):
    """An item of POST /api/v1/events/batch: an event and the event_id of its run."""

    run_event_id: Identifier


class EventOut(EventIn):
    model_config = ConfigDict(from_attributes=True)


class CreatedOut(BaseModel):
    status: str = Field(description="created, or duplicate when this event_id was stored before")
    event_id: str
    run_id: str | None = None
    message: str | None = None


class UpdatedOut(BaseModel):
    event_id: str
    updated: bool
    fields_updated: list[str]


class CommitOut(BaseModel):
    status: str
    event_id: str
    run_id: str
    commit_hash: str


# Lists, for the OpenAPI schema of the batch endpoints and list responses.
class RunInList(RootModel[list[RunIn]]):
    pass


class RunOutList(RootModel[list[RunOut]]):
    pass


class EventInList(RootModel[list[EventIn]]):
    pass


class EventOutList(RootModel[list[EventOut]]):
    pass


class BatchEventInList(RootModel[list[BatchEventIn]]):
    pass


# The items of POST /api/v1/ingest (core.ingest), each with its kind.
class RunItem(RunIn):
    kind: Literal["run"]


class EventItem(BatchEventIn):
    kind: Literal["event"]


class EndItem(RunEnd):
    kind: Literal["end"]


class CommitKindItem(CommitItem):
    kind: Literal["commit"]
