from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        # Registers the tasks in every process: services.queue() sends one by its name.
        from notifications import tasks  # noqa: F401
