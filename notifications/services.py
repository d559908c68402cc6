"""Telling people and other systems: one mechanism for every app (approvals, alerts, forwarded
records).

Each message to each channel is a `Delivery` row: `notify()` writes them (a notification to the
channels that hear its topic) and forwarding (`notifications.forwarding`) writes one per batch
of events a channel forwards; a worker sends them (`notifications.sending`), never the request
path, so a dead mail server or webhook never slows an agent. A failed one is tried again after an
exponential backoff by beat's retry sweep, until delivered or out of attempts; the admin shows
each one's status and retries failed ones.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace

from celery import signature
from django.utils import timezone

from notifications.models import Delivery, Notification, NotificationChannel, PostedMessage
from notifications.sending import forget_failures

logger = logging.getLogger(__name__)

# The task that sends deliveries, named rather than imported: it calls back into this app.
SEND_DELIVERIES = "notifications.tasks.send_deliveries"


def notify(notification: Notification, channels: list[NotificationChannel] | None = None) -> int:
    """Deliver `notification` to each of `channels` (by default: every enabled channel that hears
    its topic); how many. Call it after the transaction commits (inside it: `record`)."""
    ids = record(notification, channels)
    queue(ids)
    return len(ids)


def record(notification: Notification, channels: list[NotificationChannel] | None = None) -> list[int]:
    """Write the deliveries of `notification` (see notify) without handing them to a worker: in
    the transaction that writes what they tell of, so that neither stands without the other.
    `queue` them once it commits; if that is lost, beat's retry sweep sends them."""
    if channels is None:
        channels = [channel for channel in NotificationChannel.objects.filter(enabled=True) if channel.hears(notification.topic)]
    created = Delivery.objects.bulk_create(
        [Delivery(channel=channel, topic=notification.topic, notification=asdict(notification)) for channel in channels]
    )
    if notification.key and not notification.replaces:  # where a Slack app posts it: updated later
        apps = [channel for channel in channels if channel.kind == NotificationChannel.Kind.SLACK_APP]
        PostedMessage.objects.bulk_create([PostedMessage(channel=c, key=notification.key) for c in apps], ignore_conflicts=True)
    return [delivery.pk for delivery in created]


def update_messages(key: str, notification: Notification) -> list[int]:
    """Record deliveries that replace the messages named `key` (a Slack app's posted messages)
    with `notification`, in the channels that posted them (or will); `queue` them once the
    transaction commits."""
    channels = NotificationChannel.objects.filter(posted__key=key)
    return record(replace(notification, key=key, replaces=True), list(channels))


def reply(channel: NotificationChannel, recipient: str, text: str) -> None:
    """Tell one person alone (a Slack user id), in a Slack app's channel, by a worker."""
    notify(Notification(topic="slack.reply", subject="", text=text, recipient=recipient), [channel])


def queue(ids: list[int]) -> None:
    """Hand deliveries to a worker; if the broker is down, beat's retry sweep sends them later."""
    if ids:
        try:
            signature(SEND_DELIVERIES, args=(ids,)).apply_async(retry=False)
        except Exception:
            logger.exception("notifications: could not queue %d deliveries; the retry sweep will send them", len(ids))


def retry_failed(deliveries) -> int:
    """Make the failed ones among `deliveries` pending again, with fresh attempts, and send them
    now: their channels are tried at once (someone fixed the receiver, presumably)."""
    failed = deliveries.filter(status=Delivery.Status.FAILED)
    ids = list(failed.values_list("pk", flat=True))
    forget_failures(*set(failed.values_list("channel_id", flat=True)))
    Delivery.objects.filter(pk__in=ids).update(status=Delivery.Status.PENDING, attempts=0, next_attempt_at=timezone.now())
    queue(ids)
    return len(ids)
