"""An installation made before the apps were split by concern upgrades with every row.

The database is migrated back to the layout every earlier release had (the models of
notifications in `core`, those of traces, metrics and quality in `runs`), filled through the
models of that layout, migrated forward, and read back through today's models: the same rows,
field for field, with their links, permissions and admin history."""

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
from traces.models import Span

# The last migration of each app in the old layout; apps that did not exist then are unapplied.
OLD_LAYOUT = [
    ("core", "0004_delivery_records"),
    ("alerts", "0001_initial"),
    ("runs", "0008_metricpoint_covering_index"),
    ("notifications", None),
    ("quality", None),
    ("metrics", None),
    ("traces", None),
]
# Each moved model: its label then and now.
MOVED = {
    "core.NotificationChannel": "notifications.NotificationChannel",
    "core.Delivery": "notifications.Delivery",
    "runs.Span": "traces.Span",
    "runs.ExportMark": "traces.ExportMark",
    "runs.MetricSeries": "metrics.MetricSeries",
    "runs.MetricPoint": "metrics.MetricPoint",
    "runs.MetricMinute": "metrics.MetricMinute",
    "runs.ModelPrice": "quality.ModelPrice",
    "runs.LlmUsage": "quality.LlmUsage",
    "runs.FeedbackEntry": "quality.FeedbackEntry",
    "runs.TemplateFeedback": "quality.TemplateFeedback",
    "runs.ChangedDay": "quality.ChangedDay",
    "runs.RunDay": "quality.RunDay",
    "runs.UsageDay": "quality.UsageDay",
    "runs.UsageStageDay": "quality.UsageStageDay",
}


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

    run = old.get_model("runs", "Run").objects.create(
        event_id="e1", run_id="r1", agent_name="alpha", job_type="crawl", start_time=now, status="success"
    )
    span_model = old.get_model("runs", "Span")
    span_model.objects.create(
        event_id="4bf92f3577b34da6a3ce929d0e0e47360000000000000001", trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        span_id="0000000000000001", name="fetch", span_kind="client", status="error", status_message="timeout",
        start_time=now, end_time=now + timedelta(seconds=2), agent_name="alpha", service_name="crawler",
        attributes={"gen_ai.request.model": "m", "n": 3}, events=[{"name": "retry", "timestamp": now.isoformat()}], run=run,
    )  # fmt: skip
    span_model.objects.create(
        event_id="4bf92f3577b34da6a3ce929d0e0e47360000000000000002", trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        span_id="0000000000000002", parent_span_id="0000000000000001", name="parse", start_time=now, end_time=now,
        agent_name="alpha",
    )  # fmt: skip
    old.get_model("runs", "ExportMark").objects.create(name="otlp-spans", position=1)

    series_model = old.get_model("runs", "MetricSeries")
    steps = series_model.objects.create(
        name="step_seconds", labels_key='{"phase":"plan"}', labels={"phase": "plan"}, metric_type="histogram",
        count=2, sum=0.75, buckets=[0, 0, 1, 1] + [0] * 11, last_at=now,
    )  # fmt: skip
    calls = series_model.objects.create(name="calls_total", labels_key="{}", metric_type="counter", value=5, count=5, sum=5)
    for series, value in ((steps, 0.25), (steps, 0.5), (calls, 5)):
        old.get_model("runs", "MetricPoint").objects.create(
            event_id=f"p-{series.name}-{value}", series=series, timestamp=now, agent_name="alpha", value=value
        )
    old.get_model("runs", "MetricMinute").objects.create(
        series=steps, minute=now.replace(second=0, microsecond=0), count=2, sum=0.75, min=0.25, max=0.5
    )

    old.get_model("runs", "ModelPrice").objects.update_or_create(
        model="bench-model", defaults={"tier": "cheap", "input_per_mtok": "0.25", "output_per_mtok": "1.25"}
    )
    usage_model = old.get_model("runs", "LlmUsage")
    usage_model.objects.create(
        event_id="u1", run=run, timestamp=now, agent_name="alpha", workflow="w", stage="s", task_type="t", provider="p",
        model="bench-model", tier="cheap", input_tokens=1000, output_tokens=200, cache_read_tokens=50, cost="0.00050000",
        latency_ms=120, fallback=True,
    )  # fmt: skip
    usage_model.objects.create(event_id="u2", timestamp=now, agent_name="beta", model="m2", success=False)
    old.get_model("runs", "FeedbackEntry").objects.create(
        event_id="f1", timestamp=now, workflow_name="w", stage_name="s", tier="cheap", quality_score=0.75, metadata={"k": 1}
    )
    old.get_model("runs", "TemplateFeedback").objects.create(event_id="t1", timestamp=now, template_id="greet", good=True)
    old.get_model("runs", "ChangedDay").objects.create(day=now.date())
    counts = {"call_count": 1, "ok_count": 1, "fallback_count": 1, "cost_sum": "0.0005", "fallback_cost_sum": "0.0005"}
    old.get_model("runs", "RunDay").objects.create(
        day=now.date(), agent_name="alpha", job_type="crawl", status="success", run_count=1, items_succeeded_sum=3,
        items_failed_sum=0, duration_ms_sum=10, created_at_max=now, runs_under_1s=1, runs_under_5s=0, runs_under_30s=0,
        runs_under_1min=0, runs_under_5min=0, runs_under_30min=0, runs_longer=0,
    )  # fmt: skip
    old.get_model("runs", "UsageDay").objects.create(
        day=now.date(), agent_name="alpha", model="bench-model", tier="cheap", input_tokens_sum=1000, output_tokens_sum=200,
        cache_read_tokens_sum=50, cache_write_tokens_sum=0, latency_ms_sum=120, **counts,
    )  # fmt: skip
    old.get_model("runs", "UsageStageDay").objects.create(
        day=now.date(), workflow="w", stage="s", task_type="t", model="bench-model", tier="cheap", **counts
    )


def rows(models, label: str, fields: list[str] | None = None) -> list[dict]:
    """The rows of the model `label`, with `fields` (all by default)."""
    app_label, name = label.split(".")
    return list(models.get_model(app_label, name).objects.order_by("pk").values(*(fields or [])))


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
        assert before[label], f"the test wrote no {label}"
        # Its fields then: those added since (a Slack app's bot token) are new to every row.
        assert rows(apps, new_label, list(before[label][0])) == before[label], new_label
    assert sorted(AlertRule.objects.get().channels.values_list("name", flat=True)) == channels_of_rule == ["hook", "mail"]
    assert Span.objects.get(span_id="0000000000000001").run.event_id == "e1"
    assert User.objects.get(username="reviewer").has_perm("notifications.change_delivery")
    log = current.get_model("admin", "LogEntry").objects.get()
    assert (log.content_type.app_label, log.content_type.model) == ("notifications", "delivery")
    assert not ContentType.objects.filter(app_label="core", model__in=["delivery", "notificationchannel"]).exists()
    # The tables have today's names and the links between them follow.
    tables = connection.introspection.table_names()
    for old_label, new_label in MOVED.items():
        assert old_label.lower().replace(".", "_") not in tables
        assert new_label.lower().replace(".", "_") in tables
    with connection.cursor() as cursor:
        relations = connection.introspection.get_relations(cursor, "alerts_alertrule_channels")
        assert relations["notificationchannel_id"][1] == "notifications_notificationchannel"
        assert connection.introspection.get_relations(cursor, "notifications_delivery")["channel_id"][1] == (
            "notifications_notificationchannel"
        )
        assert connection.introspection.get_relations(cursor, "traces_span")["run_id"][1] == "runs_run"
        assert connection.introspection.get_relations(cursor, "quality_llmusage")["run_id"][1] == "runs_run"
        for table in ("metrics_metricpoint", "metrics_metricminute"):
            assert connection.introspection.get_relations(cursor, table)["series_id"][1] == "metrics_metricseries"
