from django.db import models


class Agent(models.Model):
    """The registry row of one agent, by the id it acts as (keys are bound to these ids)."""

    agent_id = models.CharField(max_length=200, unique=True)
    display_name = models.CharField(max_length=200, blank=True, default="")
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["agent_id"]

    def __str__(self) -> str:
        return self.display_name or self.agent_id
