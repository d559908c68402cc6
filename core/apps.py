from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"

    def ready(self) -> None:
        from django.urls import register_converter

        from core import authentication, checks, db, websocket  # noqa: F401  (connect their receivers, register the checks)
        from core.converters import IdConverter
        from core.prometheus import EventMetrics, QuotaMetrics, register
        from core.selfmetrics import ServerMetrics

        register(EventMetrics())
        register(QuotaMetrics())
        register(ServerMetrics())
        register_converter(IdConverter, "id")
