"""What `telemetry export` and the analytics page export (core.exports): runs, LLM usage, feedback."""

from core.exports import Kind, model_columns, model_record
from quality.models import FeedbackEntry, LlmUsage
from runs.exports import RUNS

USAGE = Kind("usage", model_columns(LlmUsage), lambda: LlmUsage.objects.order_by("-timestamp", "-id"), model_record, "timestamp")
FEEDBACK = Kind(
    "feedback",
    model_columns(FeedbackEntry),
    lambda: FeedbackEntry.objects.order_by("-timestamp", "-id"),
    model_record,
    "timestamp",
)
KINDS = {kind.name: kind for kind in (RUNS, USAGE, FEEDBACK)}
