"""Notifications of new requests: e-mail (Django's outbox) and webhooks (a real local receiver),
signed, with a link that opens the decision page once, after login."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time

import httpx
import pytest
from django.contrib.auth.models import Permission
from django.core import mail, signing

from approvals import services
from approvals.models import ApprovalRequest
from notifications.models import Delivery, NotificationChannel
from tests.conftest import make_key
from tests.fakes import http_receiver
from tests.services import asgi_server, celery_processes
from tests.test_scale_out import PLAIN_HTTP_COOKIES, csrf_token, log_in

CHANNELS = "/admin/notifications/notificationchannel/"


def channels(url: str) -> dict[str, NotificationChannel]:
    return {
        "email": NotificationChannel.objects.create(name="reviewers", kind="email", target="ada@example.com, bo@example.com"),
        "webhook": NotificationChannel.objects.create(name="hook", kind="webhook", target=url, topics=["approval.requested"]),
        "slack": NotificationChannel.objects.create(name="slack", kind="slack", target=url),
        "other": NotificationChannel.objects.create(name="costs", kind="webhook", target=url, topics=["alert.opened"]),
    }


@pytest.mark.django_db
def test_a_new_request_mails_and_posts_a_signed_single_use_link(eager, django_capture_on_commit_callbacks, client, admin_user):
    with http_receiver() as (url, received):
        configured = channels(url)
        with django_capture_on_commit_callbacks(execute=True):
            request = services.create("deployer", "deploy", {"service": "search"}, 600)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ada@example.com", "bo@example.com"] and "deploy for deployer" in message.subject
    link = message.body.strip().splitlines()[-1]
    assert link.startswith("http://") and "/approvals/open/" in link and '"service": "search"' in message.body

    assert len(received) == 2  # the JSON webhook and the Slack one; "costs" hears something else
    webhook = next(r for r in received if b'"topic"' in r["body"])
    body = json.loads(webhook["body"])
    assert body["topic"] == "approval.requested" and body["link"] == link and body["data"]["request_id"] == request.request_id
    signed = webhook["headers"]["X-Telemetry-Timestamp"].encode() + b"." + webhook["body"]
    expected = hmac.new(configured["webhook"].secret.encode(), signed, hashlib.sha256).hexdigest()
    assert webhook["headers"]["X-Telemetry-Signature"] == f"sha256={expected}"
    slack = json.loads(next(r for r in received if r is not webhook)["body"])
    assert list(slack) == ["text"] and link in slack["text"]

    path = link.removeprefix("http://127.0.0.1:8000")
    assert client.get(path).status_code == 302  # to the login: the link alone grants nothing
    assert ApprovalRequest.objects.get(pk=request.pk).link_used_at is None
    client.force_login(admin_user)
    opened = client.get(path)
    assert opened.status_code == 302 and opened["Location"] == f"/admin/approvals/approvalrequest/{request.pk}/change/"
    used_at = ApprovalRequest.objects.get(pk=request.pk).link_used_at
    assert used_at is not None
    assert client.get(path).status_code == 410  # used up
    assert client.get(path[:-3] + "xx/").status_code == 404  # forged
    assert ApprovalRequest.objects.get(pk=request.pk).link_used_at == used_at


@pytest.mark.django_db
def test_an_old_link_has_expired(eager, admin_client):
    request = services.create("deployer", "deploy", {}, 600)

    class SignedLongAgo(signing.TimestampSigner):
        def timestamp(self):
            return signing.b62_encode(int(time.time()) - services.LINK_MAX_AGE - 60)

    token = SignedLongAgo(salt=services.LINK_SALT).sign_object(request.request_id)
    assert admin_client.get(f"/approvals/open/{token}/").status_code == 410
    assert ApprovalRequest.objects.get(pk=request.pk).link_used_at is None


def test_a_failing_webhook_is_retried_by_the_worker_and_beat_and_never_holds_up_the_agent(server_env, live_asgi):
    headers = {"Authorization": f"Api-Key {make_key('deployer')[1]}"}
    retrying = {**server_env, "DELIVERY_RETRY_SECONDS": "1"}
    # The receiver holds every attempt until the agent has its answer: an answer that waited for
    # the webhook would never come (httpx's 5 s timeout).
    answered = threading.Event()
    with http_receiver(statuses=[500, 503], hold=answered) as (url, received), celery_processes(retrying):
        NotificationChannel.objects.create(name="hook", kind="webhook", target=url)
        asked = httpx.post(f"{live_asgi}/api/v1/approvals", json={"approval_type": "deploy"}, headers=headers)
        assert asked.status_code == 201
        answered.set()
        deadline = time.monotonic() + 30
        while len(received) < 3:  # two failures, then delivered
            assert time.monotonic() < deadline, f"only {len(received)} attempts"
            time.sleep(0.2)
        assert len({r["body"] for r in received}) == 1


def test_on_the_real_server_the_admin_queues_a_test_for_the_worker_and_the_delivery_log_shows_the_result(
    server_env, django_user_model
):
    """A staff member who may change channels, logged in with their password, sends a test to a
    working receiver and to a dead address: the admin's answer comes at once with nothing sent
    (no worker runs yet, and the receiver holds its answers); a real worker then delivers one and
    logs the other's failure. No page shows the webhook's URL; an agent is served meanwhile."""
    user = django_user_model.objects.create_user("channel-admin", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["view_notificationchannel", "change_notificationchannel", "view_delivery"])
    )
    agent = {"Authorization": f"Api-Key {make_key('alpha')[1]}"}
    answered = threading.Event()
    with (
        http_receiver(hold=answered) as (url, received),
        asgi_server({**server_env, **PLAIN_HTTP_COOKIES}) as base,
        httpx.Client(base_url=base, timeout=30) as browser,
    ):
        hook_url = f"{url}/T0001/hook-token-s3cr3t"
        working = NotificationChannel.objects.create(name="hook", kind="webhook", target=hook_url)
        dead = NotificationChannel.objects.create(name="dead", kind="webhook", target="http://127.0.0.1:9/hook")
        log_in(browser, "channel-admin", "pw")
        listing = browser.get(CHANNELS)
        assert listing.status_code == 200 and "send_test" in listing.text
        test = {"action": "send_test", "_selected_action": [str(working.pk), str(dead.pk)]}
        started = time.monotonic()
        page = browser.post(CHANNELS, data={**test, "csrfmiddlewaretoken": csrf_token(listing.text)}, follow_redirects=True)
        took = time.monotonic() - started
        assert page.status_code == 200 and "Test notification queued for dead, hook" in page.text
        assert took < 5, f"the admin's request took {took:.1f} s"  # (the dead address and the held receiver take longer)
        assert received == []
        queued = Delivery.objects.filter(topic="test")
        assert sorted(queued.values_list("channel__name", "status")) == [("dead", "pending"), ("hook", "pending")]
        assert httpx.post(f"{base}/api/v1/agents/alpha/heartbeat", json={}, headers=agent).status_code == 200

        answered.set()
        with celery_processes(server_env, beat=False):
            deadline = time.monotonic() + 30
            while (
                dict(queued.values_list("channel__name", "status")).get("hook") != "delivered"
                or not queued.get(channel=dead).last_error
            ):
                assert time.monotonic() < deadline, list(queued.values_list("channel__name", "status", "last_error"))
                time.sleep(0.2)
        log = browser.get("/admin/notifications/delivery/")
        assert log.status_code == 200 and "ConnectError" in log.text
        shown = page.text + log.text + browser.get(f"{CHANNELS}{working.pk}/change/").text
    assert json.loads(received[0]["body"])["topic"] == "test" and received[0]["path"].endswith("/T0001/hook-token-s3cr3t")
    assert "hook-token-s3cr3t" not in shown  # the webhook's URL is write-only
    assert dict(queued.values_list("channel__name", "status")) == {"hook": "delivered", "dead": "pending"}
    assert "ConnectError" in queued.get(channel=dead).last_error


@pytest.mark.django_db
def test_a_channel_with_a_bad_target_is_refused(admin_client):
    form = {"name": "x", "kind": "email", "target": "not an address", "topics": "[]", "secret": "s", "enabled": "on"}
    page = admin_client.post("/admin/notifications/notificationchannel/add/", form)
    assert page.status_code == 200 and "valid email" in page.content.decode()
    assert not NotificationChannel.objects.exists()
