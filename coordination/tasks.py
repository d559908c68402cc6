from celery import shared_task

from coordination import heartbeats


@shared_task(ignore_result=True)
def sync_agent_registry() -> int:
    """Beat runs this every REGISTRY_SYNC_SECONDS: the Agent rows catch up with the beats."""
    return heartbeats.sync_registry()


@shared_task(ignore_result=True)
def sweep_stale_agents() -> list[str]:
    """Beat runs this every STALE_SWEEP_SECONDS: agents silent past their threshold become stale."""
    return heartbeats.sweep()
