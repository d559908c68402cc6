"""Runs as an export (core.exports): as the API returns them, newest first."""

from core.exports import Kind
from runs.models import Run
from runs.schemas import RunOut, run_json

RUNS = Kind("runs", list(RunOut.model_fields), lambda: Run.objects.order_by("-created_at", "-id"), run_json, "created_at")
