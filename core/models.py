from __future__ import annotations

import secrets
from datetime import timedelta
from fnmatch import fnmatchcase

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import models
from django.utils import timezone
from rest_framework_api_key.models import AbstractAPIKey

from core.scopes import AGENT_SCOPES, SCOPES

# last_used_at is refreshed at most this often, so a busy key costs no write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def validate_scopes(value: list[str]) -> None:
    unknown = sorted(set(value) - set(SCOPES))
    if unknown:
        raise ValidationError(f"unknown scopes: {', '.join(unknown)}; known: {', '.join(SCOPES)}")


def validate_agent_patterns(value: list[str]) -> None:
    if not value or not all(isinstance(p, str) and p.strip() for p in value):
        raise ValidationError("give at least one agent id or glob pattern, e.g. 'crawler-*'")


def default_scopes() -> list[str]:
    return list(AGENT_SCOPES)


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


def new_secret() -> str:
    return secrets.token_hex(32)


class NotificationChannel(models.Model):
    """Where people (or other systems) are told that something happened: e-mail, a JSON webhook or
    a Slack-compatible webhook. Each channel hears the topics (event types) it lists."""

    class Kind(models.TextChoices):
        EMAIL = "email", "e-mail"
        WEBHOOK = "webhook", "JSON webhook"
        SLACK = "slack", "Slack-compatible webhook"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    target = models.CharField(max_length=1000, help_text="E-mail addresses (comma-separated), or the webhook's URL.")
    topics = models.JSONField(
        default=list,
        blank=True,
        help_text='Notifications it hears, e.g. ["approval.requested"]; empty: every one (none if it forwards records).',
    )
    forwards = models.JSONField(
        default=list,
        blank=True,
        help_text='Records it receives: event types whose every event is sent here as it happens, e.g. ["run.ended"].',
    )
    secret = models.CharField(
        max_length=64,
        default=new_secret,
        help_text="Webhook bodies are signed with it: X-Telemetry-Signature: sha256=<HMAC-SHA256 of the body>.",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    def hears(self, topic: str) -> bool:
        """Listed topics; with none, every notification, unless it is a channel that forwards records."""
        return topic in self.topics if self.topics else not self.forwards

    def recipients(self) -> list[str]:
        return [address.strip() for address in self.target.split(",") if address.strip()]

    def clean(self) -> None:
        if self.kind == self.Kind.EMAIL:
            for address in self.recipients():
                validate_email(address)
        else:
            URLValidator(schemes=["http", "https"])(self.target)
        for name in ("topics", "forwards"):
            value = getattr(self, name)
            if not isinstance(value, list) or not all(isinstance(topic, str) for topic in value):
                raise ValidationError({name: 'A list of event types, e.g. ["run.ended"].'})


class Delivery(models.Model):
    """One message to one channel: a notification (an approval to decide, an alert) or a batch of
    forwarded records (events of one type, in stream order). A worker sends it at once; a failed
    one waits `backoff` and is sent again by beat's retry sweep, until delivered or out of
    attempts (DELIVERY_MAX_ATTEMPTS)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="deliveries")
    topic = models.CharField(max_length=200, db_index=True)
    record_id = models.CharField(
        max_length=300, blank=True, default="", help_text="Forwarded events' type and first..last stream ids: sent once."
    )
    notification = models.JSONField(help_text="What is sent: topic, subject, text, link, data.")
    records = models.PositiveIntegerField(default=0, help_text="The forwarded events it carries (0: a notification).")
    records_json = models.TextField(blank=True, default="", help_text="The forwarded events: their JSON array, as sent.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_due")]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "record_id"], condition=~models.Q(record_id=""), name="delivery_record_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.topic} to {self.channel.name}: {self.status}"
