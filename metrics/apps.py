from django.apps import AppConfig


class MetricsConfig(AppConfig):
    name = "metrics"

    def ready(self) -> None:
        from core import ingest
        from core.prometheus import register_text
        from metrics import collectors, schemas, services

        register_text(collectors.sent_series_text)
        ingest.register("metric", services.ingest_metrics, schemas.MetricItem)
