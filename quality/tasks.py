from celery import shared_task

from quality import rollups


@shared_task(ignore_result=True)
def refresh_rollups() -> int:
    """Beat runs this every minute, so that reports find little left to recompute."""
    return rollups.refresh()
