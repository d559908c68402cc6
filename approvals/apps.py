from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"

    def ready(self) -> None:
        from approvals import metrics
        from core.metrics import register

        for collector in (metrics.ApprovalMetrics(),):
            register(collector)
