"""The retention of deliveries (core.tasks.purge_old_deliveries, run by beat)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.models import Delivery, NotificationChannel
from notifications.tasks import purge_old_deliveries

pytestmark = pytest.mark.django_db


def test_delivered_messages_past_the_retention_are_purged_and_the_rest_kept(settings):
    settings.DELIVERY_RETENTION_DAYS = 7
    channel = NotificationChannel.objects.create(name="hook", kind="webhook", target="http://127.0.0.1:9/hook")
    now = timezone.now()
    made = {}
    for name, status, age in [
        ("old delivered", "delivered", timedelta(days=8)),
        ("recent delivered", "delivered", timedelta(days=6)),
        ("old failed", "failed", timedelta(days=30)),
        ("old pending", "pending", timedelta(days=30)),
    ]:
        notification = {"topic": "alert.opened", "subject": name, "text": ""}
        made[name] = Delivery.objects.create(channel=channel, topic="alert.opened", notification=notification, status=status)
        Delivery.objects.filter(pk=made[name].pk).update(created_at=now - age)

    assert purge_old_deliveries() == 1
    assert sorted(Delivery.objects.values_list("notification__subject", flat=True)) == [
        "old failed",
        "old pending",
        "recent delivered",
    ]
    assert purge_old_deliveries() == 0
