from celery import shared_task

from alerts import services


@shared_task(ignore_result=True)
def evaluate_alert_rules() -> dict[str, int]:
    """Beat runs this every ALERT_EVALUATE_SECONDS."""
    return services.evaluate_all()
