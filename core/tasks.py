from celery import shared_task
from django.utils import timezone

from core.models import NotificationChannel
from core.notifications import DELIVERY_ERRORS, Notification, deliver
from core.redis import get_redis

BACKGROUND_TICK_KEY = "telemetry:background:tick"


@shared_task(ignore_result=True)
def record_worker_heartbeat() -> None:
    """Beat sends this every 15 s and the worker runs it, so a fresh tick means both are up."""
    get_redis().set(BACKGROUND_TICK_KEY, timezone.now().timestamp(), ex=3600)


@shared_task(ignore_result=True, autoretry_for=DELIVERY_ERRORS, retry_backoff=2, retry_backoff_max=600, max_retries=8)
def deliver_notification(channel_id: int, notification: dict) -> None:
    """One notification to one channel, retried with exponential backoff (about 15 minutes in all)."""
    channel = NotificationChannel.objects.filter(pk=channel_id, enabled=True).first()
    if channel is not None:
        deliver(channel, Notification(**notification))
