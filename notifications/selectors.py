"""What other apps may read of notifications."""

from __future__ import annotations

from datetime import datetime

from notifications.models import Delivery, NotificationChannel, PostedMessage

NOT_FORWARDED = "not_forwarded"


def forwarded(event_type: str, record_key: str, since: datetime, until: datetime) -> list[dict]:
    """Where the record of `event_type` whose data holds the string `record_key` went: for each
    channel that forwards that type, the status of the batch delivery holding it, or
    "not_forwarded" when none made between `since` and `until` does (not yet read, or the channel
    was made after it). Found in the batches' records themselves: no row is kept per record."""
    found = []
    for channel in NotificationChannel.objects.order_by("name"):
        if event_type not in channel.forwards:
            continue
        delivery = (
            Delivery.objects.filter(channel=channel, topic=event_type, created_at__range=(since, until))
            .filter(records_json__contains=f'"{record_key}"')
            .only("status", "delivered_at", "attempts")
            .order_by("created_at")
            .first()
        )
        found.append(
            {
                "channel": channel.name,
                "event_type": event_type,
                "status": delivery.status if delivery else NOT_FORWARDED,
                "delivered_at": delivery.delivered_at.isoformat() if delivery and delivery.delivered_at else None,
                "attempts": delivery.attempts if delivery else 0,
                "delivery_id": delivery.pk if delivery else None,
            }
        )
    return found


def slack_apps() -> list[NotificationChannel]:
    """The enabled Slack app channels: the signing secrets a request from Slack may be signed with."""
    return list(NotificationChannel.objects.filter(kind=NotificationChannel.Kind.SLACK_APP, enabled=True))


def posted_message(slack_channel: str, ts: str) -> PostedMessage | None:
    """The message a Slack app's channel posted at `ts` in Slack's channel `slack_channel`, with its channel."""
    return PostedMessage.objects.select_related("channel").filter(slack_channel=slack_channel, ts=ts).first()
