"""Sending to a Slack app's channel through Slack's Web API (slack_sdk): a notification is posted
with its buttons, and later updated in place (`chat.update`) by one that `replaces` it; a reply
to one person is shown to them alone (`chat.postEphemeral`). Called by a worker (sending.deliver):
what fails raises, and the delivery is tried again after its backoff."""

from __future__ import annotations

from django.conf import settings
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from notifications.models import Notification, NotificationChannel, PostedMessage

SECTION_CHARS = 3000  # Block Kit's limit on a section's text
FALLBACK_CHARS = 3000  # the message's `text`: what notifications and screen readers show
TIMEOUT = 10.0


class NotPostedYet(SlackClientError):
    """An update whose message is not posted yet: it waits for the post (the delivery before it)."""


def deliver(channel: NotificationChannel, notification: Notification) -> str:
    web = WebClient(token=channel.token, base_url=settings.SLACK_API_URL, timeout=TIMEOUT)
    if notification.recipient:
        web.chat_postEphemeral(channel=channel.target, user=notification.recipient, text=notification.text)
        return f"replied to {notification.recipient} in {channel.target}"
    text = f"{notification.subject}\n{notification.text}"[:FALLBACK_CHARS]
    if notification.replaces:
        message = PostedMessage.objects.filter(channel=channel, key=notification.key).first()
        if message is None:
            return f"no message {notification.key} to update (purged)"
        if not message.ts:
            raise NotPostedYet(f"{notification.key} is not posted yet")
        web.chat_update(channel=message.slack_channel, ts=message.ts, text=text, blocks=blocks(notification))
        return f"updated {notification.key} in {message.slack_channel}"
    answer = web.chat_postMessage(channel=channel.target, text=text, blocks=blocks(notification), unfurl_links=False)
    if notification.key:
        posted = {"slack_channel": answer["channel"], "ts": answer["ts"]}
        PostedMessage.objects.filter(channel=channel, key=notification.key).update(**posted)
    return f"posted to {channel.target}"


def blocks(notification: Notification) -> list[dict]:
    """The message in Block Kit: its subject and text as Slack shows them (escaped), the link, the buttons."""
    text = f"*{slack_escape(notification.subject)}*\n{slack_escape(notification.text)}"
    found = [{"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_CHARS]}}]
    if notification.link:
        found.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{notification.link}|Open>"}]})
    if notification.buttons:
        found.append({"type": "actions", "elements": [button(spec) for spec in notification.buttons]})
    return found


def button(spec: dict[str, str]) -> dict:
    found = {
        "type": "button",
        "action_id": spec["action"],
        "text": {"type": "plain_text", "text": spec["label"]},
        "value": spec["value"],
    }
    if spec.get("style"):
        found["style"] = spec["style"]
    return found


def slack_escape(text: str) -> str:
    """Text as Slack shows it, never as its markup: what an agent wrote cannot mention everyone
    (<!channel>) or show a link under another name (<https://...|text>). Slack's formatting
    docs: escape &, < and >, and nothing else."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
