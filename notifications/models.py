from __future__ import annotations

import re
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
    # For the channels that can act on them (a Slack app's): the message's name, so that a later
    # notification `replaces` it (services.update_messages); buttons ({"action", "label", "value", "style"});
    # the one person it is shown to (a Slack user id), in the channel.
    key: str = ""
    buttons: list[dict[str, str]] = field(default_factory=list)
    replaces: bool = False
    recipient: str = ""

    def message(self) -> dict[str, Any]:
        """What a JSON webhook receives: the message, without what only a Slack app acts on."""
        return {"topic": self.topic, "subject": self.subject, "text": self.text, "link": self.link, "data": self.data}


SLACK_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,30}")


def new_secret() -> str:
    return secrets.token_hex(32)


class NotificationChannel(models.Model):
    """Where people (or other systems) are told that something happened: e-mail, a JSON webhook, a
    Slack-compatible webhook, or a Slack app (its messages have buttons, and are updated later).
    Each channel hears the topics (event types) it lists."""

    class Kind(models.TextChoices):
        EMAIL = "email", "e-mail"
        WEBHOOK = "webhook", "JSON webhook"
        SLACK = "slack", "Slack-compatible webhook"
        SLACK_APP = "slack_app", "Slack app"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    target = models.CharField(
        max_length=1000, help_text="E-mail addresses (comma-separated), the webhook's URL, or a Slack app's channel id."
    )
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
        help_text="Webhook bodies are signed with it: X-Telemetry-Signature: sha256=<HMAC-SHA256 of the body>. "
        "A Slack app's: the signing secret Slack gave, that its requests are checked with.",
    )
    token = models.CharField(max_length=255, blank=True, default="", help_text="A Slack app's bot token (xoxb-...).")
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
        elif self.kind == self.Kind.SLACK_APP:
            if not SLACK_CHANNEL_ID.fullmatch(self.target):
                raise ValidationError({"target": "A Slack channel id, e.g. C0123456789 (channel details, at the bottom)."})
            if self.forwards:
                raise ValidationError({"forwards": "A Slack app's channel is told notifications; it forwards no records."})
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


class PostedMessage(models.Model):
    """A message a Slack app's channel posted for a notification with a `key`: where it is
    (Slack's channel id and the message's ts), to update it later and to know what its buttons are
    about. Written with the delivery, so an update recorded before the post is sent finds it (and
    waits for its ts); purged with the delivered deliveries."""

    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="posted")
    key = models.CharField(max_length=200, db_index=True)
    slack_channel = models.CharField(max_length=50, blank=True, default="")
    ts = models.CharField(max_length=50, blank=True, default="", help_text="Empty until posted.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "key"], name="posted_message_once")]
        indexes = [models.Index(fields=["slack_channel", "ts"], name="posted_message_at")]

    def __str__(self) -> str:
        return f"{self.key} in {self.slack_channel or self.channel.target} ({self.ts or 'not posted'})"
