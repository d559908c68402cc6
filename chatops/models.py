import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,30}")


class SlackUser(models.Model):
    """A Slack account that acts as a user of this server when it presses a button in Slack. Only
    the accounts an administrator lists here decide, by Slack's member id (which Slack signs into
    each request), never by a display name or an e-mail address someone could set."""

    slack_id = models.CharField(
        max_length=40,
        unique=True,
        verbose_name="Slack member id",
        help_text="e.g. U0123456789: in Slack, the person's profile, ⋮ (more), Copy member ID.",
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="slack_accounts")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slack_id"]
        verbose_name = "Slack user"

    def __str__(self) -> str:
        return f"{self.slack_id} as {self.user.get_username()}"

    def clean(self) -> None:
        if not SLACK_USER_ID.fullmatch(self.slack_id):
            raise ValidationError({"slack_id": "A Slack member id: U or W, then capital letters and digits."})
