"""An installation made before the apps were split by concern upgrades with every row.

The database is migrated back to the layout every earlier release had (the models of
notifications in `core`), filled through the models of that layout, migrated forward, and read
back through today's models: the same rows, field for field, with their links, permissions and
admin history."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from alerts.models import AlertRule

# The last migration of each app in the old layout; apps that did not exist then are unapplied.
OLD_LAYOUT = [("core", "0004_delivery_records"), ("alerts", "0001_initial"), ("notifications", None)]
# Each moved model: its label then and now.
MOVED = {"core.NotificationChannel": "notifications.NotificationChannel", "core.Delivery": "notifications.Delivery"}


def migrate(targets):
    """Migrate to `targets`; the models of the state it leaves."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(list(MigrationRecorder(connection).applied_migrations())).apps


def fill(old) -> None:
    """A little of everything the moved models hold, written as the old layout wrote it."""
    now = timezone.now()
    channel_model, delivery_model = old.get_model("core", "NotificationChannel"), old.get_model("core", "Delivery")
    hook = channel_model.objects.create(name="hook", kind="webhook", target="http://127.0.0.1:9/h", topics=["alert.opened"])
    mail = channel_model.objects.create(
        name="mail", kind="email", target="ops@example.com", forwards=["run.ended"], enabled=False
    )
    delivery_model.objects.create(channel=hook, topic="alert.opened", notification={"subject": "s", "text": "t"})
    delivery_model.objects.create(
        channel=mail,
        topic="run.ended",
        record_id="run.ended:1-0..2-0",
        notification={"subject": "2 run.ended records"},
        records=2,
        records_json='[{"event_id": "1-0"}, {"event_id": "2-0"}]',
        status="failed",
        attempts=12,
        last_error="ConnectError: refused",
        delivered_at=now,
        next_attempt_at=now + timedelta(minutes=5),
    )
    rule = old.get_model("alerts", "AlertRule").objects.create(name="stale", kind="agent_stale")
    rule.channels.set([hook, mail])
    old.get_model("alerts", "Alert").objects.create(rule=rule, subject="agent:a", summary="a is stale", opened_at=now)


def rows(models, label: str) -> list[dict]:
    app_label, name = label.split(".")
    return list(models.get_model(app_label, name).objects.order_by("pk").values())


@pytest.mark.django_db(transaction=True)
def test_an_installation_of_the_old_layout_upgrades_with_every_row():
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    try:
        old = migrate(OLD_LAYOUT)
        fill(old)
        before = {label: rows(old, label) for label in MOVED}
        old_content_type = old.get_model("contenttypes", "ContentType").objects.get(app_label="core", model="delivery")
        retry = old.get_model("auth", "Permission").objects.get(content_type=old_content_type, codename="change_delivery")
        reviewer = old.get_model("auth", "User").objects.create(username="reviewer", is_staff=True)
        reviewer.user_permissions.add(retry)
        old.get_model("admin", "LogEntry").objects.create(
            user=reviewer,
            content_type=old_content_type,
            object_id="1",
            object_repr="hook",
            action_flag=2,
            action_time=timezone.now(),
        )
        channels_of_rule = sorted(old.get_model("alerts", "AlertRule").objects.get().channels.values_list("name", flat=True))
    finally:
        current = migrate(latest)
    ContentType.objects.clear_cache()

    for label, new_label in MOVED.items():
        assert rows(apps, new_label) == before[label], new_label
        assert before[label], f"the test wrote no {label}"
    assert sorted(AlertRule.objects.get().channels.values_list("name", flat=True)) == channels_of_rule == ["hook", "mail"]
    assert User.objects.get(username="reviewer").has_perm("notifications.change_delivery")
    log = current.get_model("admin", "LogEntry").objects.get()
    assert (log.content_type.app_label, log.content_type.model) == ("notifications", "delivery")
    assert not ContentType.objects.filter(app_label="core", model__in=["delivery", "notificationchannel"]).exists()
    # The tables have today's names and the links between them follow.
    tables = connection.introspection.table_names()
    assert {"notifications_notificationchannel", "notifications_delivery"} <= set(tables)
    assert not {"core_notificationchannel", "core_delivery"} & set(tables)
    with connection.cursor() as cursor:
        relations = connection.introspection.get_relations(cursor, "alerts_alertrule_channels")
        assert relations["notificationchannel_id"][1] == "notifications_notificationchannel"
        assert connection.introspection.get_relations(cursor, "notifications_delivery")["channel_id"][1] == (
            "notifications_notificationchannel"
        )
