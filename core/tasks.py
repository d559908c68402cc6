from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from core import notifications
from core.batch import purge
from core.models import Delivery
from core.redis import get_redis

BACKGROUND_TICK_KEY = "telemetry:background:tick"


@shared_task(ignore_result=True)
def record_worker_heartbeat() -> None:
    """Beat sends this every WORKER_TICK_SECONDS and the worker runs it, so a fresh tick means both are up."""
    get_redis().set(BACKGROUND_TICK_KEY, timezone.now().timestamp(), ex=3600)


@shared_task(ignore_result=True)
def send_deliveries(ids: list[int]) -> dict[str, int]:
    return notifications.send(ids)


@shared_task(ignore_result=True)
def retry_due_deliveries() -> dict[str, int]:
    """Beat runs this every DELIVERY_RETRY_SECONDS: deliveries whose backoff is over."""
    return notifications.send(notifications.due_deliveries())


@shared_task(ignore_result=True)
def forward_events() -> int:
    """Beat runs this every FORWARD_SECONDS: new events to the channels that forward them."""
    return notifications.forward_events()


@shared_task(ignore_result=True)
def purge_old_deliveries() -> int:
    """Delivered messages older than DELIVERY_RETENTION_DAYS (failed ones stay until retried or deleted)."""
    old = timezone.now() - timedelta(days=settings.DELIVERY_RETENTION_DAYS)
    return purge(Delivery.objects.filter(status=Delivery.Status.DELIVERED, created_at__lt=old))
