"""What other apps may read of LLM usage."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import QuerySet, Sum

from quality.models import LlmUsage


def llm_cost(since: datetime, until: datetime) -> QuerySet[Any]:
    """The LLM cost of each agent and model between `since` and `until`: rows of agent_name, model, cost."""
    usage = LlmUsage.objects.filter(timestamp__gte=since, timestamp__lte=until)
    return usage.values("agent_name", "model").annotate(cost=Sum("cost"))
