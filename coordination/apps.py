from django.apps import AppConfig


class CoordinationConfig(AppConfig):
    name = "coordination"

    def ready(self) -> None:
        from coordination import metrics
        from core.metrics import register

        for collector in (metrics.AgentMetrics(),):
            register(collector)
