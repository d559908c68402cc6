"""Beat's sweeps across apps: old records out, new ones to an OpenTelemetry collector."""

import httpx
from celery import shared_task
from django.conf import settings

from metrics import exporters as metric_exporters
from metrics import services as metric_services
from traces import exporters as span_exporters
from traces import services as span_services


@shared_task(ignore_result=True)
def purge_old_records() -> dict[str, int]:
    """Beat runs this every hour: metric points, spans and metric minute rollups past their
    *_RETENTION_DAYS; how many of each."""
    purged = metric_services.purge_old_metrics(settings.METRICS_RETENTION_DAYS, settings.AGGREGATES_RETENTION_DAYS)
    return {**purged, "spans": span_services.purge_old_spans(settings.TRACES_RETENTION_DAYS)}


@shared_task(ignore_result=True)
def export_otlp(timeout: float = 10.0) -> dict[str, int]:
    """Beat runs this every OTLP_EXPORT_SECONDS when OTLP_EXPORT_ENDPOINT is set: the spans stored
    since the last export and every metric series; how many of each."""
    if not settings.OTLP_EXPORT_ENDPOINT:
        return {}
    base = settings.OTLP_EXPORT_ENDPOINT.rstrip("/")
    with httpx.Client(headers=settings.OTLP_EXPORT_HEADERS, timeout=timeout) as client:
        return {"spans": span_exporters.export_spans(client, base), "metrics": metric_exporters.export_metrics(client, base)}
