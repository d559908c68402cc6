"""What other apps may read of the agent registry."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from coordination.models import Agent


def stale_agents() -> QuerySet[Agent]:
    """Agents silent past their threshold that did not say they stopped."""
    return Agent.objects.filter(stale_since__isnull=False, stopped_at__isnull=True)


def stale_at_or_before(moment: datetime) -> QuerySet[Agent]:
    """Agents stale since `moment` or earlier (a subquery for runs of theirs, say)."""
    return Agent.objects.filter(stale_since__lte=moment)
