"""Telling people and other systems: one mechanism for every app (approvals, alerts, forwarded
records).

Each message to each channel is a `Delivery` row: `notify()` writes them (a notification to the
channels that hear its topic) and `forward_events()` writes one per event a channel forwards; a
worker sends them (`send()`), never the request path, so a dead mail server or webhook never
slows an agent. A failed one is tried again after an exponential backoff by beat's retry sweep,
until delivered or out of attempts; the admin shows each one's status and retries failed ones.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from core import events
from core.models import Delivery, NotificationChannel
from core.redis import get_redis

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Telemetry-Signature"
TIMESTAMP_HEADER = "X-Telemetry-Timestamp"
WEBHOOK_TIMEOUT = 10.0
# What a failed delivery raises (smtplib's errors are OSErrors).
DELIVERY_ERRORS = (httpx.HTTPError, OSError)
BACKOFF_MAX_SECONDS = 600
DUE_BATCH = 500  # deliveries one retry sweep sends
FORWARD_BATCH = 1000  # events of one type one forwarding pass reads per channel
FORWARD_CURSOR = "telemetry:forward:{channel}:{event_type}"  # the last stream id forwarded
FORWARD_LOCK = "telemetry:forward:lock"


@dataclass
class Notification:
    topic: str  # an event type, e.g. approval.requested
    subject: str
    text: str
    link: str = ""  # where a person acts on it
    data: dict[str, Any] = field(default_factory=dict)


def notify(notification: Notification, channels: list[NotificationChannel] | None = None) -> int:
    """Deliver `notification` to each of `channels` (by default: every enabled channel that hears
    its topic); how many. Call it after the transaction commits."""
    if channels is None:
        channels = [channel for channel in NotificationChannel.objects.filter(enabled=True) if channel.hears(notification.topic)]
    created = Delivery.objects.bulk_create(
        [Delivery(channel=channel, topic=notification.topic, notification=asdict(notification)) for channel in channels]
    )
    _queue([delivery.pk for delivery in created])
    return len(created)


def _queue(ids: list[int]) -> None:
    """Hand deliveries to a worker; if the broker is down, beat's retry sweep sends them later."""
    from core.tasks import send_deliveries

    if ids:
        try:
            send_deliveries.apply_async((ids,), retry=False)
        except Exception:
            logger.exception("notifications: could not queue %d deliveries; the retry sweep will send them", len(ids))


def backoff(attempts: int) -> timedelta:
    """How long after its `attempts`th failure a delivery is tried again: 1 s, 2 s, 4 s... (seed 003's)."""
    return timedelta(seconds=min(2 ** (attempts - 1), BACKOFF_MAX_SECONDS))


def send(ids: list[int]) -> dict[str, int]:
    """Send the pending deliveries among `ids` that are due, oldest first. After a channel fails,
    its other deliveries here are not tried this time (a dead receiver costs one timeout per
    round, not one per record): they count an attempt too and wait their backoff."""
    now = timezone.now()
    due = Delivery.objects.filter(pk__in=ids, status=Delivery.Status.PENDING, next_attempt_at__lte=now)
    outcome = {"delivered": 0, "failed": 0, "postponed": 0}
    failed_channels: dict[int, str] = {}
    for delivery in due.select_related("channel").order_by("pk"):
        # Claim it: one attempt, by one worker, however many sweeps see it due.
        attempt = delivery.attempts + 1
        claimed = Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.PENDING, attempts=delivery.attempts)
        if not claimed.update(attempts=attempt, next_attempt_at=now + backoff(attempt)):
            continue
        error = failed_channels.get(delivery.channel_id)
        if error is None:
            try:
                deliver(delivery.channel, Notification(**delivery.notification))
            except DELIVERY_ERRORS as exc:
                error = failed_channels[delivery.channel_id] = f"{type(exc).__name__}: {exc}"[:1000]
            else:
                delivered = {"status": Delivery.Status.DELIVERED, "delivered_at": timezone.now(), "last_error": ""}
                Delivery.objects.filter(pk=delivery.pk).update(**delivered)
                outcome["delivered"] += 1
                continue
        else:
            error = f"not tried: the channel failed just before ({error})"[:1000]
            outcome["postponed"] += 1
        final = attempt >= settings.DELIVERY_MAX_ATTEMPTS
        Delivery.objects.filter(pk=delivery.pk).update(
            last_error=error, status=Delivery.Status.FAILED if final else Delivery.Status.PENDING
        )
        outcome["failed"] += final
    return outcome


def due_deliveries() -> list[int]:
    """Pending deliveries whose next attempt is due (beat's retry sweep), at most DUE_BATCH."""
    due = Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=timezone.now()).order_by("next_attempt_at")
    return list(due.values_list("pk", flat=True)[:DUE_BATCH])


def retry_failed(deliveries) -> int:
    """Make the failed ones among `deliveries` pending again, with fresh attempts, and send them."""
    ids = list(deliveries.filter(status=Delivery.Status.FAILED).values_list("pk", flat=True))
    Delivery.objects.filter(pk__in=ids).update(status=Delivery.Status.PENDING, attempts=0, next_attempt_at=timezone.now())
    _queue(ids)
    return len(ids)


def forward_events() -> int:
    """Write a delivery for each event a channel forwards that it was not sent yet, and queue them;
    how many. Each channel reads each of its event types' streams from where it left off (at
    first: from when the channel was created). Serialized by a lock: a slow pass and the next one
    never read the same events twice (and the database refuses a record twice anyway)."""
    redis = get_redis()
    lock = redis.lock(FORWARD_LOCK, timeout=300, blocking=False)
    if not lock.acquire():
        return 0
    try:
        new: list[Delivery] = []
        cursors: dict[str, str] = {}
        for channel in NotificationChannel.objects.filter(enabled=True).exclude(forwards=[]):
            for event_type in channel.forwards:
                cursor_key = FORWARD_CURSOR.format(channel=channel.pk, event_type=event_type)
                since = redis.get(cursor_key)
                since = f"({since.decode()}" if since else f"{int(channel.created_at.timestamp() * 1000)}-0"
                entries = redis.xrange(events.stream_key(event_type), min=since, max="+", count=FORWARD_BATCH)
                for entry_id, fields in entries:
                    event = events.decode(event_type, entry_id, fields)
                    new.append(Delivery(channel=channel, topic=event_type, record_id=f"{event_type}:{event['event_id']}",
                                        notification=asdict(_record(event))))  # fmt: skip
                if entries:
                    cursors[cursor_key] = entries[-1][0].decode()
        Delivery.objects.bulk_create(new, ignore_conflicts=True, batch_size=500)
        if cursors:
            redis.mset(cursors)
    finally:
        lock.release()
    # ignore_conflicts leaves the primary keys unset: the new ones are those not tried yet.
    fresh = Delivery.objects.filter(record_id__in={d.record_id for d in new}, status=Delivery.Status.PENDING, attempts=0)
    ids = list(fresh.values_list("pk", flat=True))
    _queue(ids)
    return len(ids)


def _record(event: dict[str, Any]) -> Notification:
    return Notification(
        topic=event["event_type"],
        subject=f"{event['event_type']} {event['event_id']}",
        text=json.dumps(event["data"], default=str),
        data=event,
    )


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
