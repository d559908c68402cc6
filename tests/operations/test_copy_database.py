"""Moving an installation from its SQLite database to another (PostgreSQL, in the suite's PostgreSQL
run): `copy_database` from a filled SQLite file into the configured, freshly migrated database,
then every row of every model compared, field for field."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from alerts.models import Alert, AlertRule
from approvals.models import ApprovalRequest
from coordination.models import Agent
from core.models import AgentKey
from metrics.models import MetricMinute, MetricPoint, MetricSeries
from notifications.models import Delivery, NotificationChannel
from operations import copying
from quality.models import FeedbackEntry, LlmUsage, ModelPrice, TemplateFeedback
from runs.models import Run, RunEvent
from tests.conftest import database_url
from tests.services import ROOT, production_env
from traces.models import ExportMark, Span

MAPPED = (ContentType, Permission)  # matched by name in the target, not copied
FILLED = {
    "auth.User", "auth.User_user_permissions", "admin.LogEntry", "core.AgentKey", "runs.Run", "runs.RunEvent",
    "quality.LlmUsage", "quality.FeedbackEntry", "quality.TemplateFeedback", "quality.ModelPrice", "metrics.MetricSeries",
    "metrics.MetricPoint", "metrics.MetricMinute", "traces.Span", "traces.ExportMark", "coordination.Agent",
    "approvals.ApprovalRequest", "notifications.NotificationChannel", "notifications.Delivery", "alerts.AlertRule",
    "alerts.AlertRule_channels", "alerts.Alert",
}  # fmt: skip


def migrated_sqlite(tmp_path) -> str:
    """A migrated SQLite database whose content type ids are not the target's: one more was made
    before the others."""
    path = tmp_path / "source.sqlite3"
    env = production_env(DATABASE_URL=f"sqlite:///{path}", TELEMETRY_VAR_DIR=str(tmp_path))
    manage = [sys.executable, "manage.py", "migrate", "--noinput", "-v0"]
    subprocess.run([*manage, "contenttypes"], cwd=ROOT, env=env, check=True)
    with sqlite3.connect(path) as database:
        database.execute("INSERT INTO django_content_type (app_label, model) VALUES ('gone', 'model')")
    subprocess.run(manage, cwd=ROOT, env=env, check=True)
    return f"sqlite:///{path}"


def fill(alias: str) -> None:
    """A little of everything, written with bulk_create (save() would note rollup days in the default database)."""
    now = timezone.now()
    using = lambda model: model.objects.using(alias)  # noqa: E731
    reviewer = using(User).create(username="reviewer", is_staff=True, password="x")
    change_run = using(Permission).get(codename="change_run")
    reviewer.user_permissions.add(change_run)
    run_type = using(ContentType).get(app_label="runs", model="run")
    using(LogEntry).create(user=reviewer, content_type=run_type, object_id="1", object_repr="r", action_flag=2, action_time=now)
    key = AgentKey(name="alpha", agents=["alpha-*"])
    AgentKey.objects.assign_key(key)
    key.save(using=alias)
    started = {"start_time": now, "created_at": now - timedelta(days=2)}
    run = Run(
        event_id="e1", run_id="r1", agent_name="alpha-1", job_type="crawl", status="success", metrics_json={"n": 3}, **started
    )
    run = using(Run).bulk_create([run])[0]
    using(RunEvent).bulk_create([RunEvent(event_id=f"ev{n}", run=run, event_type="step", payload={"n": n}) for n in range(3)])
    using(LlmUsage).bulk_create([LlmUsage(event_id="u1", run=run, agent_name="alpha-1", model="m", input_tokens=9, cost="0.5")])
    using(FeedbackEntry).bulk_create(
        [FeedbackEntry(event_id="f1", workflow_name="w", stage_name="s", tier="cheap", quality_score=0.5)]
    )
    using(TemplateFeedback).bulk_create([TemplateFeedback(event_id="t1", template_id="greet", good=False)])
    using(ModelPrice).filter(pk=using(ModelPrice).order_by("pk").first().pk).update(input_per_mtok="123.456")  # edited
    series = using(MetricSeries).bulk_create([MetricSeries(name="calls_total", labels_key="{}", metric_type="counter", value=2)])[
        0
    ]
    using(MetricPoint).bulk_create([MetricPoint(event_id="p1", series=series, agent_name="alpha-1", value=2)])
    using(MetricMinute).bulk_create(
        [MetricMinute(series=series, minute=now.replace(second=0, microsecond=0), count=1, sum=2, min=2, max=2)]
    )
    using(Span).bulk_create([Span(event_id="a" * 48, trace_id="a" * 32, span_id="b" * 16, name="fetch", start_time=now,
                                  end_time=now, agent_name="alpha-1", attributes={"k": [1, 2]}, run=run)])  # fmt: skip
    using(ExportMark).bulk_create([ExportMark(name="otlp-spans", position=7)])
    using(Agent).bulk_create([Agent(agent_id="alpha-1", status="running", last_seen_at=now, stale_after_seconds=30)])
    decided = {"status": "approved", "approved": True, "responder": reviewer}
    request = ApprovalRequest(approval_type="deploy", agent_id="alpha-1", timeout_seconds=60, expires_at=now, **decided)
    using(ApprovalRequest).bulk_create([request])
    channel = using(NotificationChannel).create(name="hook", kind="webhook", target="http://127.0.0.1:9/h", secret="s3cret")
    using(Delivery).bulk_create([Delivery(channel=channel, topic="alert.opened", notification={"subject": "s"}, status="failed")])
    rule = using(AlertRule).create(name="stale", kind="agent_stale")
    rule.channels.add(channel)
    using(Alert).bulk_create([Alert(rule=rule, subject="agent:alpha-1", summary="stale", opened_at=now)])


def snapshot(alias: str) -> dict[str, list[tuple]]:
    """Every row of every model in `alias`, in id order; a link to a content type or a permission
    as the name of what it points at (ids differ between the databases)."""
    types = {pk: (app, model) for pk, app, model in ContentType.objects.using(alias).values_list("pk", "app_label", "model")}
    permissions = {
        pk: (types[ct], name) for pk, ct, name in Permission.objects.using(alias).values_list("pk", "content_type_id", "codename")
    }
    names = {ContentType: types, Permission: permissions}
    rows = {}
    for model in copying.in_order():
        if model in MAPPED:
            continue
        fields = model._meta.concrete_fields
        found = model._default_manager.using(alias).order_by("pk").values_list(*(field.attname for field in fields))
        named = [names.get(field.related_model) for field in fields]
        rows[model._meta.label] = [
            tuple(value if by_id is None else by_id.get(value) for by_id, value in zip(named, row, strict=True)) for row in found
        ]
    return rows


def in_process(env: dict, code: str) -> str:
    """Run `code` in a Django process of `env` (on its database); what it printed."""
    program = [sys.executable, "-c", f"import django; django.setup()\n{code}"]
    return subprocess.run(program, cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout


def as_json(rows: dict) -> str:
    return json.dumps(rows, default=str, sort_keys=True)


@pytest.mark.django_db(transaction=True)
def test_every_row_moves_from_a_filled_sqlite_database(tmp_path):
    url = migrated_sqlite(tmp_path)
    source = production_env(DATABASE_URL=url, TELEMETRY_VAR_DIR=str(tmp_path))
    fill_and_show = "from tests.operations.test_copy_database import *; fill('default'); print(as_json(snapshot('default')))"
    before = in_process(source, fill_and_show)
    filled = {label for label, rows in json.loads(before).items() if rows}
    assert filled >= FILLED, FILLED - filled

    target = production_env(DATABASE_URL=database_url(), TELEMETRY_VAR_DIR=str(tmp_path))
    copied = subprocess.run(
        [sys.executable, "manage.py", "copy_database", url], cwd=ROOT, env=target, capture_output=True, text=True
    )
    assert copied.returncode == 0, copied.stderr
    assert "Copied" in copied.stdout

    assert as_json(snapshot("default")) == before.strip()
    assert User.objects.get(username="reviewer").has_perm("runs.change_run")
    assert str(ModelPrice.objects.order_by("pk").first().input_per_mtok) == "123.456000"  # the source's, not the seed
    new = Run.objects.create(event_id="e2", run_id="r2", agent_name="beta", job_type="crawl", start_time=timezone.now())
    assert new.pk > Run.objects.get(event_id="e1").pk  # the sequences start after the copied ids
    again = subprocess.run(
        [sys.executable, "manage.py", "copy_database", url], cwd=ROOT, env=target, capture_output=True, text=True
    )
    assert again.returncode == 1 and "holds data already" in again.stderr


@pytest.mark.django_db(transaction=True)
def test_a_source_not_migrated_to_this_version_is_refused(tmp_path):
    path = tmp_path / "old.sqlite3"
    env = production_env(DATABASE_URL=f"sqlite:///{path}", TELEMETRY_VAR_DIR=str(tmp_path))
    migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v0", "runs", "0008"]
    subprocess.run(migrate, cwd=ROOT, env=env, check=True)
    target = production_env(DATABASE_URL=database_url(), TELEMETRY_VAR_DIR=str(tmp_path))
    copy = [sys.executable, "manage.py", "copy_database", f"sqlite:///{path}"]
    refused = subprocess.run(copy, cwd=ROOT, env=target, capture_output=True, text=True)
    assert refused.returncode == 1 and "not migrated to this version" in refused.stderr
    assert not Run.objects.exists()
