from django.apps import AppConfig


class CoordinationConfig(AppConfig):
    name = "coordination"

    def ready(self) -> None:
        from coordination import collectors
        from core.prometheus import register

        for collector in (collectors.AgentMetrics(),):
            register(collector)
