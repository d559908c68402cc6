from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"

    def ready(self) -> None:
        from core.metrics import register
        from runs import metrics

        for collector in (
            metrics.SentMetrics(),
            metrics.RunMetrics(),
        ):
            register(collector)
