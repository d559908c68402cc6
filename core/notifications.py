"""Telling people and other systems: one mechanism for every app (approvals, alerts).

`notify()` hands a Notification to each enabled channel that hears its topic, as a Celery task
(retried with backoff, never in the request path: a dead mail server or webhook never slows an
agent). `deliver()` does the sending, and raises when it fails.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from django.conf import settings
from django.core.mail import send_mail

from core.models import NotificationChannel

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Telemetry-Signature"
TIMESTAMP_HEADER = "X-Telemetry-Timestamp"
WEBHOOK_TIMEOUT = 10.0
# What a failed delivery raises (smtplib's errors are OSErrors).
DELIVERY_ERRORS = (httpx.HTTPError, OSError)


@dataclass
class Notification:
    topic: str  # an event type, e.g. approval.requested
    subject: str
    text: str
    link: str = ""  # where a person acts on it
    data: dict[str, Any] = field(default_factory=dict)


def notify(notification: Notification, channels: list[NotificationChannel] | None = None) -> int:
    """Queue `notification` for each of `channels` (by default: every enabled channel that hears
    its topic); how many. Call it after the transaction commits. A broker that is down is logged,
    never raised."""
    from core.tasks import deliver_notification

    queued = 0
    for channel in NotificationChannel.objects.filter(enabled=True) if channels is None else channels:
        if channels is not None or channel.hears(notification.topic):
            try:
                deliver_notification.apply_async((channel.pk, asdict(notification)), retry=False)
                queued += 1
            except Exception:
                logger.exception("notifications: could not queue %s for %s", notification.topic, channel)
    return queued


def deliver(channel: NotificationChannel, notification: Notification) -> str:
    """Send now; a line saying what was done. Raises on failure (the task retries)."""
    message = f"{notification.text}\n\n{notification.link}" if notification.link else notification.text
    if channel.kind == NotificationChannel.Kind.EMAIL:
        send_mail(notification.subject, message, settings.DEFAULT_FROM_EMAIL, channel.recipients())
        return f"mailed {', '.join(channel.recipients())}"
    if channel.kind == NotificationChannel.Kind.SLACK:
        link = f"\n<{notification.link}|Open>" if notification.link else ""
        payload = {"text": f"*{notification.subject}*\n{notification.text}{link}"}
    else:
        payload = {"text": f"{notification.subject}\n{message}", **asdict(notification)}
    body = json.dumps(payload, default=str).encode()
    response = httpx.post(channel.target, content=body, headers=signed_headers(channel.secret, body), timeout=WEBHOOK_TIMEOUT)
    response.raise_for_status()
    return f"posted to {channel.target}: {response.status_code}"


def signed_headers(secret: str, body: bytes) -> dict[str, str]:
    """The receiver checks HMAC-SHA256(secret, f"{timestamp}.".encode() + body) against the signature."""
    timestamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", SIGNATURE_HEADER: f"sha256={digest}", TIMESTAMP_HEADER: timestamp}
