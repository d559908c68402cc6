from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import models
from django.utils import timezone


@dataclass
class Notification:
    """What a channel is told: the message a delivery carries."""

    topic: str  # an event type, e.g. approval.requested
    subject: str
    text: str
    link: str = ""  # where a person acts on it
    data: dict[str, Any] = field(default_factory=dict)


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
