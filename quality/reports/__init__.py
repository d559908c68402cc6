"""The reports of `manage.py telemetry` and GET /api/v1/reports/<name>, by name."""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction

from quality import rollups
from quality.models import FeedbackEntry, LlmUsage, TemplateFeedback
from quality.reports.base import DEFAULT_DAYS, Report
from quality.reports.runs import agent_performance, compare, feature_status, file_test_status, test_status
from quality.reports.usage import cache_stats, fallback_analysis, savings, show, task_routing, tier1_status
from runs import services as runs

__all__ = ["DEFAULT_DAYS", "REPORTS", "WITHOUT_PERIOD", "Report", "reset"]

REPORTS: dict[str, Callable[..., Report]] = {
    "show": show,
    "savings": savings,
    "cache-stats": cache_stats,
    "compare": compare,
    "agent-performance": agent_performance,
    "task-routing": task_routing,
    "tier1-status": tier1_status,
    "test-status": test_status,
    "file-test-status": file_test_status,
    "sonnet-opus-analysis": fallback_analysis,
    "features": feature_status,
}
WITHOUT_PERIOD = {"features"}


def reset(include_runs: bool = False) -> dict[str, int]:
    """Delete LLM usage and feedback (and with `include_runs`, runs and their events); how many of each."""
    models = {"usage": LlmUsage, "feedback": FeedbackEntry, "template feedback": TemplateFeedback}
    with transaction.atomic():
        deleted = {name: model.objects.all().delete()[0] for name, model in models.items()}
        if include_runs:
            deleted.update(runs.delete_all())
        rollups.forget(include_runs)
    return deleted
