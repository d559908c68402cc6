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
