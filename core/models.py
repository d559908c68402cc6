from __future__ import annotations

from datetime import timedelta
from fnmatch import fnmatchcase

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from rest_framework_api_key.models import AbstractAPIKey

from core.scopes import agent_default, known

# last_used_at is refreshed at most this often, so a busy key costs no write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def validate_scopes(value: list[str]) -> None:
    unknown = sorted(set(value) - set(known()))
    if unknown:
        raise ValidationError(f"unknown scopes: {', '.join(unknown)}; known: {', '.join(known())}")


def validate_agent_patterns(value: list[str]) -> None:
    if not value or not all(isinstance(p, str) and p.strip() for p in value):
        raise ValidationError("give at least one agent id or glob pattern, e.g. 'crawler-*'")


def default_scopes() -> list[str]:
    return agent_default()


class AgentKey(AbstractAPIKey):
    """An API key an agent authenticates with, stored hashed (SHA-512 by djangorestframework-api-key).

    A key acts only as the agents its glob patterns match, and only within its scopes.
    """

    agents = models.JSONField(
        validators=[validate_agent_patterns],
        help_text='Agent ids or glob patterns this key may act as, e.g. ["crawler-*"].',
    )
    scopes = models.JSONField(default=default_scopes, validators=[validate_scopes])
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "agent key"
        verbose_name_plural = "agent keys"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def may_act_as(self, agent_id: str) -> bool:
        return any(fnmatchcase(agent_id, pattern) for pattern in self.agents)

    @property
    def sole_agent(self) -> str | None:
        """The agent id this key acts as, when it names exactly one and no pattern."""
        if len(self.agents) == 1 and not any(char in self.agents[0] for char in "*?["):
            return self.agents[0]
        return None

    @property
    def use_to_record(self) -> bool:
        """Whether the stored time of last use is older than LAST_USED_RESOLUTION."""
        return not self.last_used_at or timezone.now() - self.last_used_at >= LAST_USED_RESOLUTION

    def touch(self) -> None:
        """Record use, writing only when the stored time is older than LAST_USED_RESOLUTION."""
        if not self.use_to_record:
            return
        now = self.last_used_at = timezone.now()
        AgentKey.objects.filter(pk=self.pk).filter(
            models.Q(last_used_at__isnull=True) | models.Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
