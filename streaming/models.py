from django.db import models


class EventStream(models.Model):
    """No table: the holder of the permissions a person's session needs for the event streams
    (the streams:* scopes, core.scopes), given in the admin as any model's."""

    class Meta:
        managed = False
        default_permissions = ("view", "add")
        permissions = [("trim_eventstream", "Can trim and delete event streams")]

    def __str__(self) -> str:
        return "event streams"
