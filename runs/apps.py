from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"

    def ready(self) -> None:
        from core.metrics import register, register_text
        from runs import metrics

        register(metrics.RunMetrics())
        register_text(metrics.sent_series_text)
