"""The security tests' world: alpha's things, a row of every model the admin shows, the personas."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Group, Permission
from django.core import signing
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule

from alerts.models import Alert, AlertRule
from approvals import services as approvals
from approvals.models import ApprovalPolicy
from chatops.models import SlackUser
from coordination import heartbeats, signals
from core import events
from notifications.models import Delivery, NotificationChannel
from quality.models import ModelPrice
from runs.models import Run
from tests.conftest import key_client, make_key
from tests.runs.factories import run_payload
from tests.security.world import MARKER, READ_SCOPES, STREAM, TRACE_ID, one_good_span


@pytest.fixture
def world(db, django_user_model) -> SimpleNamespace:
    """Alpha's things (a run with an event, a trace, a heartbeat, signals, approval requests, a
    stream), a row of every model the admin shows, and the personas' credentials."""
    _, raw_a = make_key("alpha")
    _, raw_b = make_key("beta")
    _, raw_reader = make_key("reader", agents=["alpha"], scopes=READ_SCOPES)
    alpha = key_client(raw_a)
    run = run_payload("alpha")
    items = [
        {"kind": "run", **run},
        {"kind": "event", "run_event_id": run["event_id"], "event_type": "step", "payload": {"n": 1}},
        {"kind": "usage", "agent_name": "alpha", "model": "claude-sonnet-4", "input_tokens": 10, "run_event_id": run["event_id"]},
        {
            "kind": "feedback",
            "agent_name": "alpha",
            "workflow_name": "docs",
            "stage_name": "draft",
            "tier": "cheap",
            "quality_score": 0.9,
        },
        {"kind": "template_feedback", "agent_name": "alpha", "template_id": "faq-7", "good": True},
        {"kind": "metric", "agent_name": "alpha", "name": "pages_total", "metric_type": "counter", "value": 1},
    ]
    stored = alpha.post("/api/v1/ingest", items, format="json")
    assert stored.status_code == 200, stored.content
    spans = alpha.post("/v1/traces", one_good_span(TRACE_ID), format="json")
    assert spans.status_code == 200 and "rejectedSpans" not in spans.content.decode(), spans.content
    async_to_sync(heartbeats.beat)("alpha", {"status": "running"}, start=True)
    async_to_sync(signals.send)("ping", "beta", "alpha", {"secret": MARKER}, 600)
    asked = {name: approvals.create("alpha", "deploy", {"secret": MARKER}, 600) for name in ("ask", "cancel", "decide", "link")}
    events.publish_now([events.Event(STREAM, {"n": 1})])
    channel = NotificationChannel.objects.create(name="ops", kind="email", target="ops@example.com")
    Delivery.objects.create(channel=channel, topic="test", notification={"subject": "s"}, status="failed")
    rule = AlertRule.objects.create(name="silence", kind="agent_stale")
    details = {"agent_id": "alpha", "stale_since": rule.created_at.isoformat()}
    Alert.objects.create(rule=rule, subject="agent:alpha", summary="alpha is stale", details=details, opened_at=rule.created_at)
    Group.objects.create(name="operators")
    SlackUser.objects.create(slack_id="U0ROOT", user=django_user_model.objects.create_user("slack-linked"))
    ApprovalPolicy.objects.create(name="matrix", agent_glob="nobody-*")  # decides none of alpha's
    interval = IntervalSchedule.objects.create(every=10, period="seconds")
    PeriodicTask.objects.get_or_create(name="matrix", defaults={"task": "core.tasks.tick", "interval": interval})
    ClockedSchedule.objects.create(clocked_time=rule.created_at)
    CrontabSchedule.objects.create()
    SolarSchedule.objects.create(event="sunrise", latitude=1, longitude=1)
    ModelPrice.objects.get_or_create(
        model="claude-sonnet-4", defaults={"tier": "capable", "input_per_mtok": 3, "output_per_mtok": 15}
    )

    operator = django_user_model.objects.create_user("operator", is_staff=True)
    operator.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    reviewer = django_user_model.objects.create_user("reviewer", is_staff=True)
    reviewer.user_permissions.set(Permission.objects.filter(codename__in=["view_approvalrequest", "decide_approvalrequest"]))
    superuser = django_user_model.objects.create_superuser("root", password=None)
    return SimpleNamespace(
        keys={"key_a": raw_a, "key_b": raw_b, "reader": raw_reader},
        users={"operator": operator, "reviewer": reviewer, "superuser": superuser},
        run=Run.objects.get(event_id=run["event_id"]),
        approvals=asked,
        link=signing.dumps(asked["link"].request_id, salt=approvals.LINK_SALT),
    )
