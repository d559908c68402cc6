from django.contrib import admin

from chatops.models import SlackUser


@admin.register(SlackUser)
class SlackUserAdmin(admin.ModelAdmin):
    """Who decides as whom from Slack: what each account may then do is its user's permissions."""

    list_display = ["slack_id", "user", "created_at"]
    search_fields = ["slack_id", "user__username", "user__email"]
    raw_id_fields = ["user"]
