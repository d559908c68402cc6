from celery import shared_task
from django.utils import timezone

from core.redis import get_redis

BACKGROUND_TICK_KEY = "telemetry:background:tick"


@shared_task(ignore_result=True)
def record_worker_heartbeat() -> None:
    """Beat sends this every WORKER_TICK_SECONDS and the worker runs it, so a fresh tick means both are up."""
    get_redis().set(BACKGROUND_TICK_KEY, timezone.now().timestamp(), ex=3600)
