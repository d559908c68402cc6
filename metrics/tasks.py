from pathlib import Path

from celery import shared_task
from django.conf import settings

from metrics import exporters


@shared_task(ignore_result=True)
def export_metrics_json() -> str:
    """Beat runs this every METRICS_JSON_EXPORT_SECONDS when METRICS_JSON_EXPORT_DIR is set."""
    if not settings.METRICS_JSON_EXPORT_DIR:
        return ""
    return str(exporters.export_json(Path(settings.METRICS_JSON_EXPORT_DIR), settings.METRICS_JSON_EXPORT_MAX_FILES))
