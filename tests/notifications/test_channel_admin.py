"""A webhook's URL (where Slack and others keep the token) and every channel's signing secret are
write-only in the admin: shown once, when made, and set anew without being read."""

from __future__ import annotations

import pytest

from notifications.models import NotificationChannel

pytestmark = pytest.mark.django_db
URL = "https://hooks.slack.example/services/T0/B0/tok3n"


def test_a_webhooks_url_and_secret_are_shown_once_and_set_anew_without_being_read(admin_client):
    form = {"name": "slack", "kind": "slack", "target": URL, "topics": "[]", "forwards": "[]", "enabled": "on"}
    added = admin_client.post("/admin/notifications/notificationchannel/add/", form, follow=True).content.decode()
    channel = NotificationChannel.objects.get()
    assert added.count(channel.secret) == 1 and "tok3n" not in added  # the secret, once, in the message
    change = f"/admin/notifications/notificationchannel/{channel.pk}/change/"
    page = admin_client.get(change).content.decode()
    assert "tok3n" not in page and channel.secret not in page and "https://hooks.slack.example/…" in page

    assert admin_client.post(change, {**form, "target": ""}).status_code == 302  # empty: kept
    kept = NotificationChannel.objects.get()
    assert (kept.target, kept.secret) == (URL, channel.secret)

    regenerated = admin_client.post(change, {**form, "target": "", "regenerate_secret": "on"}, follow=True).content.decode()
    renewed = NotificationChannel.objects.get()
    assert renewed.secret != channel.secret and regenerated.count(renewed.secret) == 1
    assert renewed.secret not in admin_client.get(change).content.decode()

    admin_client.post(change, {**form, "target": URL.replace("tok3n", "n3w")})
    assert NotificationChannel.objects.get().target.endswith("/n3w")
    listed = admin_client.get("/admin/notifications/notificationchannel/").content.decode()
    assert "n3w" not in listed and "tok3n" not in listed


def test_a_slack_apps_bot_token_and_signing_secret_are_given_and_never_shown(admin_client):
    form = {"name": "approvals", "kind": "slack_app", "target": "C0APPROVE", "topics": "[]", "forwards": "[]", "enabled": "on"}
    add = "/admin/notifications/notificationchannel/add/"
    missing = admin_client.post(add, {**form, "token": "xoxb-t0ken"}).content.decode()
    assert "needs the app&#x27;s signing secret" in missing and not NotificationChannel.objects.exists()
    wrong = admin_client.post(add, {**form, "target": "#approvals", "token": "xoxb-t0ken", "slack_signing_secret": "s1gn"})
    assert "A Slack channel id" in wrong.content.decode()
    secrets = {"token": "xoxb-t0ken", "slack_signing_secret": "s1gn1ng-secret"}
    added = admin_client.post(add, {**form, **secrets}, follow=True).content.decode()
    channel = NotificationChannel.objects.get()
    assert (channel.token, channel.secret) == ("xoxb-t0ken", "s1gn1ng-secret")
    change = f"/admin/notifications/notificationchannel/{channel.pk}/change/"
    page = admin_client.get(change).content.decode()
    assert "C0APPROVE" in page and not any(secret in added + page for secret in secrets.values())

    assert admin_client.post(change, form).status_code == 302  # empty: kept
    assert NotificationChannel.objects.filter(token="xoxb-t0ken", secret="s1gn1ng-secret").exists()
    admin_client.post(change, {**form, "token": "xoxb-n3w"})
    assert NotificationChannel.objects.get().token == "xoxb-n3w"
