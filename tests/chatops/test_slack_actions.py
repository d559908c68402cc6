"""Approve and Reject pressed in Slack, on the real server: requests signed as Slack signs them
(built here, not with slack_sdk), and a fake of Slack's Web API on loopback that the worker's
code path (notifications.sending.send) posts, updates and replies to."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import httpx
import pytest
from django.contrib.auth.models import Permission

from approvals import services
from approvals.models import ApprovalPolicy, ApprovalRequest
from chatops.models import SlackUser
from notifications.models import Delivery, NotificationChannel, PostedMessage
from notifications.sending import send
from tests.fakes import fake_slack

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # a Slack app's signing secret (this one: Slack's docs' example)


@pytest.fixture(scope="module")
def slack():
    with fake_slack() as found:
        yield found


def send_pending() -> None:
    """What a worker does with the deliveries queued (the test runs no worker)."""
    send(list(Delivery.objects.filter(status="pending").values_list("pk", flat=True)))


def press(request: ApprovalRequest, user: str, action: str = "approvals.approve", ts: str = "") -> str:
    """The body Slack posts when `user` presses a button of the message that asked for `request`
    (or of the message at `ts`)."""
    message = PostedMessage.objects.get(key=f"approval:{request.request_id}")
    message.ts = ts or message.ts
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T0TEAM"},
        "team": {"id": "T0TEAM"},
        "container": {"type": "message", "channel_id": message.slack_channel, "message_ts": message.ts},
        "channel": {"id": message.slack_channel},
        "message": {"ts": message.ts},
        "response_url": "https://hooks.slack.example/actions/T0TEAM/1/xyz",
        # Each press is its own: Slack stamps it (a press repeated is not a replay).
        "actions": [
            {
                "type": "button",
                "action_id": action,
                "value": request.request_id,
                "block_id": "b",
                "action_ts": f"{time.time_ns()}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})


def signed(body: str, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    """Slack's headers: v0 HMAC-SHA256 of `v0:{timestamp}:{body}` with the signing secret."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest}",
    }


def test_a_press_decides_once_as_the_linked_user_and_everything_else_is_refused_or_told(
    slack, settings, live_asgi, django_user_model
):
    url, calls, _ = slack
    settings.SLACK_API_URL = url
    calls.clear()
    channel = NotificationChannel.objects.create(
        name="approvals", kind="slack_app", target="C0APPROVE", token="xoxb-test", secret=SECRET, topics=["approval.requested"]
    )
    decide = Permission.objects.get(codename="decide_approvalrequest")
    for name in ("ada", "bo", "cy"):  # bo is linked, but may not decide
        user = django_user_model.objects.create_user(name, password="pw", is_staff=True)
        user.user_permissions.set([] if name == "bo" else [decide])
        SlackUser.objects.create(slack_id=f"U0{name.upper()}", user=user)
    request = services.create("deployer", "deploy", {"service": "search"}, 600)
    send_pending()
    assert [call["method"] for call in calls] == ["chat.postMessage"]
    endpoint = f"{live_asgi}/chatops/slack/actions"

    ada_presses = press(request, "U0ADA")
    refused = {
        "unsigned": httpx.post(endpoint, content=ada_presses, headers={"Content-Type": "application/x-www-form-urlencoded"}),
        "stale": httpx.post(endpoint, content=ada_presses, headers=signed(ada_presses, timestamp=int(time.time()) - 301)),
        "forged": httpx.post(endpoint, content=ada_presses, headers=signed(ada_presses, secret="not-the-secret")),
        "tampered": httpx.post(endpoint, content=ada_presses.replace("approve", "reject"), headers=signed(ada_presses)),
        "no number": httpx.post(endpoint, content=ada_presses, headers={**signed(ada_presses), "X-Slack-Request-Timestamp": "x"}),
    }
    codes = {name: (answer.status_code, answer.json()["error"]["code"]) for name, answer in refused.items()}
    assert codes == {
        "unsigned": (401, "unsigned"),
        "stale": (401, "stale"),
        "forged": (401, "bad_signature"),
        "tampered": (401, "bad_signature"),
        "no number": (401, "stale"),
    }
    elsewhere = press(request, "U0ADA", ts="1700000000.000001")  # Slack's, but not on our message
    answer = httpx.post(endpoint, content=elsewhere, headers=signed(elsewhere))
    assert (answer.status_code, answer.json()["error"]["code"]) == (404, "unknown_message")
    assert ApprovalRequest.objects.get(pk=request.pk).status == "pending" and not Delivery.objects.filter(status="pending")

    for stranger in ("U0NOBODY", "U0BO"):  # not linked; linked to a user who may not decide
        body = press(request, stranger)
        assert httpx.post(endpoint, content=body, headers=signed(body)).status_code == 200
    assert ApprovalRequest.objects.get(pk=request.pk).status == "pending"
    send_pending()
    told = {call["body"]["user"]: call["body"]["text"] for call in calls if call["method"] == "chat.postEphemeral"}
    assert set(told) == {"U0NOBODY", "U0BO"} and "not linked" in told["U0NOBODY"] and "bo may not decide" in told["U0BO"]
    assert all(call["method"] != "chat.update" for call in calls)

    # Ada approves as Cy rejects: one decides, the other is told who did.
    cy_rejects = press(request, "U0CY", "approvals.reject")
    both = [(ada_presses, signed(ada_presses)), (cy_rejects, signed(cy_rejects))]
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda sent: httpx.post(endpoint, content=sent[0], headers=sent[1], timeout=30), both))
    assert [answer.status_code for answer in answers] == [200, 200]
    decided = ApprovalRequest.objects.get(pk=request.pk)
    winner, loser = ("ada", "U0CY") if decided.status == "approved" else ("cy", "U0ADA")
    assert decided.responder_name == winner
    replayed = httpx.post(endpoint, content=ada_presses, headers=both[0][1])
    assert (replayed.status_code, replayed.json()["error"]["code"]) == (403, "replayed")
    assert ApprovalRequest.objects.get(pk=request.pk).decided_at == decided.decided_at

    calls.clear()
    send_pending()
    update = next(call["body"] for call in calls if call["method"] == "chat.update")
    assert update["ts"] == PostedMessage.objects.get(channel=channel).ts
    assert f"{decided.status.capitalize()} by {winner}" in update["text"]
    replies = [call["body"] for call in calls if call["method"] == "chat.postEphemeral"]
    assert [(r["user"], r["text"]) for r in replies] == [(loser, f"Already decided by {winner}: {decided.status}.")]
    assert len(calls) == 2  # the update and the reply: the replay decided nothing and told no one


def test_under_a_two_person_policy_a_press_is_a_vote_counted_once(slack, settings, live_asgi, django_user_model):
    url, calls, _ = slack
    settings.SLACK_API_URL = url
    NotificationChannel.objects.create(
        name="quorum", kind="slack_app", target="C0QUORUM", token="xoxb-test", secret=SECRET, topics=["approval.requested"]
    )
    ApprovalPolicy.objects.create(name="two people", agent_glob="payer-*", approvals_required=2)
    decide = Permission.objects.get(codename="decide_approvalrequest")
    for name in ("di", "ed"):
        user = django_user_model.objects.create_user(name, password="pw", is_staff=True)
        user.user_permissions.set([decide])
        SlackUser.objects.create(slack_id=f"U0{name.upper()}", user=user)
    request = services.create("payer-1", "pay", {"amount": 12}, 600)
    send_pending()
    endpoint = f"{live_asgi}/chatops/slack/actions"

    calls.clear()
    for body in (press(request, "U0DI"), press(request, "U0DI")):  # two presses of one person (not a replay)
        assert httpx.post(endpoint, content=body, headers=signed(body)).status_code == 200
    assert ApprovalRequest.objects.get(pk=request.pk).status == "pending"
    send_pending()
    told = [call["body"]["text"] for call in calls if call["method"] == "chat.postEphemeral"]
    assert told == [
        "Your approval is counted: 1 of the 2 approvals it needs.",
        "di has voted on this request already: a vote counts once.",
    ]
    assert all(call["method"] != "chat.update" for call in calls)

    calls.clear()
    body = press(request, "U0ED")
    assert httpx.post(endpoint, content=body, headers=signed(body)).status_code == 200
    decided = ApprovalRequest.objects.get(pk=request.pk)
    assert (decided.status, decided.responder_name) == ("approved", "di, ed")
    send_pending()
    assert [call["method"] for call in calls] == ["chat.update"]
    assert "Approved by di, ed" in calls[0]["body"]["text"]
