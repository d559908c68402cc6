from celery import shared_task
from django.conf import settings

from runs import services


@shared_task(ignore_result=True)
def time_out_abandoned_runs() -> int:
    """Beat runs this every minute: see services.time_out_abandoned_runs and STALE_RUN_GRACE_SECONDS."""
    return services.time_out_abandoned_runs(settings.STALE_RUN_GRACE_SECONDS)
