from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"

    def ready(self) -> None:
        from core import authentication, db, websocket  # noqa: F401  (connect their signal receivers)
        from core.metrics import EventMetrics, register

        register(EventMetrics())
