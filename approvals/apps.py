from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"

    def ready(self) -> None:
        from approvals import collectors
        from core.prometheus import register

        for collector in (collectors.ApprovalMetrics(),):
            register(collector)
