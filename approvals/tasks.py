from celery import shared_task

from approvals import services


@shared_task(ignore_result=True)
def expire_approvals() -> int:
    """Beat runs this every APPROVAL_SWEEP_SECONDS: pending requests past their timeout expire."""
    return services.expire_due()


@shared_task(ignore_result=True)
def remind_approvals() -> int:
    """Beat runs this every APPROVAL_SWEEP_SECONDS: reminders and escalations of the policies."""
    return services.remind_and_escalate()
