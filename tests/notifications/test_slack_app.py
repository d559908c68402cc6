"""A Slack app channel, against a fake of Slack's Web API on loopback (slack_sdk's real client):
an approval request is posted with Approve and Reject buttons, and the message is updated with
the outcome however the request is settled; Slack's errors are retried like any delivery's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from approvals import services
from approvals.models import ApprovalRequest
from notifications.models import Delivery, NotificationChannel, PostedMessage
from notifications.sending import forget_failures, send
from tests.fakes import fake_slack

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def slack():
    with fake_slack() as found:
        yield found


@pytest.fixture
def api(slack, settings):
    url, calls, errors = slack
    settings.SLACK_API_URL = url
    calls.clear()
    errors.clear()
    return calls, errors


def app_channel(target: str = "C0APPROVE") -> NotificationChannel:
    return NotificationChannel.objects.create(
        name=f"slack {target}", kind="slack_app", target=target, token="xoxb-test-token", secret="signing", topics=[]
    )


def send_pending() -> dict[str, int]:
    """What a worker does with the deliveries queued (the test runs no worker)."""
    return send(list(Delivery.objects.filter(status="pending").values_list("pk", flat=True)))


def test_a_request_is_posted_with_buttons_and_updated_when_decided_in_the_admin_or_when_it_expires(
    api, admin_client, django_capture_on_commit_callbacks
):
    calls, _ = api
    channel = app_channel()
    NotificationChannel.objects.create(name="mail", kind="email", target="ada@example.com")  # hears every notification
    with django_capture_on_commit_callbacks(execute=True):
        decided = services.create("deployer", "deploy", {"note": "<!channel> now"}, 600)
        expiring = services.create("deployer", "migrate", {}, 600)
    assert send_pending()["delivered"] == 4
    posts = [call for call in calls if call["method"] == "chat.postMessage"]
    assert [post["body"]["channel"] for post in posts] == ["C0APPROVE", "C0APPROVE"]
    assert all(post["authorization"] == "Bearer xoxb-test-token" for post in posts)
    section, context, actions = posts[0]["body"]["blocks"]
    assert "&lt;!channel&gt; now" in section["text"]["text"] and "<!channel>" not in section["text"]["text"]
    assert "/approvals/open/" in context["elements"][0]["text"]
    buttons = [(b["action_id"], b["value"], b["text"]["text"]) for b in actions["elements"]]
    assert buttons == [
        ("approvals.approve", decided.request_id, "Approve"),
        ("approvals.reject", decided.request_id, "Reject"),
    ]
    posted = {m.key: m for m in PostedMessage.objects.filter(channel=channel)}
    assert posted[f"approval:{decided.request_id}"].ts and posted[f"approval:{decided.request_id}"].slack_channel == "C0APPROVE"

    calls.clear()
    with django_capture_on_commit_callbacks(execute=True):
        page = admin_client.post(f"/admin/approvals/approvalrequest/{decided.pk}/decide/", {"decision": "approve"})
    assert page.status_code == 302
    ApprovalRequest.objects.filter(pk=expiring.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.expire_due() == 1
    assert send_pending()["delivered"] == 2
    updates = {call["body"]["ts"]: call["body"] for call in calls if call["method"] == "chat.update"}
    assert len(calls) == 2 and set(updates) == {posted[f"approval:{r.request_id}"].ts for r in (decided, expiring)}
    approved = updates[posted[f"approval:{decided.request_id}"].ts]
    assert approved["channel"] == "C0APPROVE" and "Approved by admin" in approved["blocks"][0]["text"]["text"]
    assert all(block["type"] != "actions" for block in approved["blocks"])  # no buttons once decided
    expired = updates[posted[f"approval:{expiring.request_id}"].ts]
    assert "Expired" in expired["text"] and all(block["type"] != "actions" for block in expired["blocks"])
    assert len(mail.outbox) == 2  # the two requests; outcomes update the Slack messages only


def test_slacks_errors_are_retried_and_an_update_waits_for_its_message(api, admin_user, django_capture_on_commit_callbacks):
    calls, errors = api
    channel = app_channel("C0GONE")
    errors["C0GONE"] = "channel_not_found"
    with django_capture_on_commit_callbacks(execute=True):
        request = services.create("deployer", "deploy", {}, 600)
    assert send_pending() == {"delivered": 0, "tried": 1, "postponed": 0, "failed": 0}
    post = Delivery.objects.get(channel=channel)
    assert post.status == "pending" and "channel_not_found" in post.last_error
    with django_capture_on_commit_callbacks(execute=True):
        assert services.decide(request, False, admin_user, "not today")
    assert send_pending()["postponed"] == 1  # the update, untried: the channel is down for its backoff

    errors.clear()  # someone invited the app to the channel
    forget_failures(channel.pk)
    Delivery.objects.update(next_attempt_at=timezone.now())
    assert send_pending()["delivered"] == 2
    assert [call["method"] for call in calls] == ["chat.postMessage", "chat.postMessage", "chat.update"]
    update = calls[-1]["body"]
    assert update["ts"] == PostedMessage.objects.get(channel=channel).ts
    assert "Rejected by admin" in update["text"] and "not today" in update["text"]


def test_an_update_never_goes_before_its_message_is_posted(api, admin_user, django_capture_on_commit_callbacks):
    calls, _ = api
    channel = app_channel()
    with django_capture_on_commit_callbacks(execute=True):
        request = services.create("deployer", "deploy", {}, 600)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.decide(request, True, admin_user)
    update = Delivery.objects.get(channel=channel, topic="approval.approved")
    assert send([update.pk])["failed"] == 0
    update.refresh_from_db()
    assert update.status == "pending" and "not posted yet" in update.last_error and calls == []
