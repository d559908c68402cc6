from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from core.batch import purge
from notifications import forwarding, sending
from notifications.models import Delivery, PostedMessage


@shared_task(ignore_result=True)
def send_deliveries(ids: list[int]) -> dict[str, int]:
    return sending.send(ids)


@shared_task(ignore_result=True)
def retry_due_deliveries() -> dict[str, int]:
    """Beat runs this every DELIVERY_RETRY_SECONDS: deliveries whose backoff is over."""
    return sending.send(sending.due_deliveries())


@shared_task(ignore_result=True)
def forward_events() -> int:
    """Beat runs this every FORWARD_SECONDS: new events to the channels that forward them."""
    return forwarding.forward_events()


@shared_task(ignore_result=True)
def purge_old_deliveries() -> int:
    """Delivered messages older than DELIVERY_RETENTION_DAYS (failed ones stay until retried or
    deleted), and the Slack messages posted as long ago (no longer updated)."""
    old = timezone.now() - timedelta(days=settings.DELIVERY_RETENTION_DAYS)
    purge(PostedMessage.objects.filter(created_at__lt=old))
    return purge(Delivery.objects.filter(status=Delivery.Status.DELIVERED, created_at__lt=old))
