"""Buttons pressed in Slack: Approve and Reject on the messages that ask for a decision.

A request counts only when it is Slack's: signed with the signing secret of an enabled Slack app
channel (`X-Slack-Signature`, v0 HMAC-SHA256 of `v0:{timestamp}:{body}`, compared in constant
time), its timestamp within 5 minutes of ours, and never seen before (its signature is kept in
Redis for as long as it could be valid). The one who pressed decides as the user their Slack
member id is linked to (chatops.models.SlackUser), if approvals says that user may; anyone else
is told so in Slack, and nothing is decided. The decision is approvals' own (one per request), and
updating the message is its too (every way a request is settled updates it), so this module only
answers the one who pressed, when there is something to tell them.

It stands above approvals and notifications: it reads both, and neither knows it.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs

from slack_sdk.signature import SignatureVerifier

from approvals import selectors as approvals
from approvals.services import APPROVE_ACTION, REJECT_ACTION, decide, message_key
from chatops.models import SlackUser
from core.redis import get_redis
from notifications import selectors as notifications
from notifications.services import reply

WINDOW_SECONDS = 300  # Slack's advice; slack_sdk's SignatureVerifier checks the same
SEEN = "telemetry:chatops:slack:seen:{signature}"  # a request already acted on
DECISIONS = {APPROVE_ACTION: True, REJECT_ACTION: False}
NOT_LINKED = (
    "Your Slack account is not linked to a user of the telemetry server, so nothing was decided. "
    "An administrator links it in the admin (Chat, Slack users)."
)


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def act(body: bytes, headers) -> None:
    """Decide as the button pressed says, or tell the one who pressed why not. Refused when the
    request is not Slack's (401), was seen before (403), or names nothing of ours (400, 404)."""
    channels = {channel.pk for channel in verified(body, headers)}
    payload = parsed(body)
    actions = payload.get("actions")
    action = actions[0] if isinstance(actions, list) and actions and isinstance(actions[0], dict) else {}
    if payload.get("type") != "block_actions" or action.get("action_id") not in DECISIONS:
        return  # nothing else is asked of this app
    container = part(payload, "container")
    message = notifications.posted_message(str(container.get("channel_id", "")), str(container.get("message_ts", "")))
    request = approvals.request_by_id(str(action.get("value", "")))
    if message is None or message.channel_id not in channels or request is None or message.key != message_key(request):
        raise Refused(404, "unknown_message", "No approval request of this server was asked in this message.")
    slack_id = str(part(payload, "user").get("id", ""))
    linked = SlackUser.objects.select_related("user").filter(slack_id=slack_id).first()
    if linked is None:
        return reply(message.channel, slack_id, NOT_LINKED)
    if not request.is_pending:
        return reply(message.channel, slack_id, already(request))
    if not approvals.may_decide(linked.user, request):
        return reply(message.channel, slack_id, refusal(linked.user, request))
    if not decide(request, DECISIONS[action["action_id"]], linked.user):
        return reply(message.channel, slack_id, already(request))
    if request.is_pending:  # a vote of several the request's policy asks for
        return reply(message.channel, slack_id, f"Your approval is counted: {counted(request)}.")
    return None


def verified(body: bytes, headers) -> list:
    """The Slack app channels whose signing secret signed this request; Refused unless some did,
    in time, for the first time."""
    timestamp, signature = headers.get("X-Slack-Request-Timestamp", ""), headers.get("X-Slack-Signature", "")
    if not timestamp or not signature:
        raise Refused(401, "unsigned", "A request from Slack has X-Slack-Request-Timestamp and X-Slack-Signature.")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > WINDOW_SECONDS:
        raise Refused(401, "stale", f"The request's timestamp is more than {WINDOW_SECONDS} s from this server's clock.")
    signed = [
        channel
        for channel in notifications.slack_apps()
        if channel.secret and SignatureVerifier(channel.secret).is_valid(body, timestamp, signature)
    ]
    if not signed:
        raise Refused(401, "bad_signature", "The signature is not that of a Slack app channel's signing secret.")
    if not get_redis().set(SEEN.format(signature=signature), 1, nx=True, ex=2 * WINDOW_SECONDS):
        raise Refused(403, "replayed", "This request was received before; it is acted on once.")
    return signed


def parsed(body: bytes) -> dict:
    """The interaction: a form with one field, `payload`, holding JSON."""
    try:
        payload = json.loads(parse_qs(body.decode())["payload"][0])
    except (UnicodeDecodeError, KeyError, ValueError):
        raise Refused(400, "bad_payload", "The body is not a form with a JSON `payload`.") from None
    if not isinstance(payload, dict):
        raise Refused(400, "bad_payload", "The payload is not a JSON object.")
    return payload


def part(payload: dict, name: str) -> dict:
    found = payload.get(name)
    return found if isinstance(found, dict) else {}


def refusal(user, request) -> str:
    name = user.get_username()
    if approvals.has_voted(user, request):
        return f"{name} has voted on this request already: a vote counts once."
    return f"{name} may not decide this request: nothing was decided."


def counted(request) -> str:
    return f"{approvals.approvals_counted(request)} of the {request.approvals_required} approvals it needs"


def already(request) -> str:
    if request.responder_name:
        return f"Already decided by {request.responder_name}: {request.status}."
    return f"Already {request.status}: {request.reason}"
