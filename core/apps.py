from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"

    def ready(self) -> None:
        from core import authentication, websocket  # noqa: F401  (connect the key-change signals)
