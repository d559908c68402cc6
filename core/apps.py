from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"

    def ready(self) -> None:
        from core import websocket  # noqa: F401  (connects the key-revocation signal)
