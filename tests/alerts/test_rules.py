"""Alert rules: each opens one alert per transition and closes it on recovery, told to its channels
(Django's outbox, a real local receiver) and published as events; concurrent evaluations open once."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from alerts import services
from alerts.models import Alert, AlertRule
from alerts.rules import VOLUME_SAMPLES_KEY, Finding
from approvals import services as approvals
from approvals.models import ApprovalRequest
from coordination import heartbeats
from core import events, streams
from core.redis import get_redis
from notifications.models import NotificationChannel
from quality.models import LlmUsage
from tests.conftest import at_once, go_silent
from tests.fakes import http_receiver
from tests.runs.factories import make_run


def rule(kind: str, channels: list[NotificationChannel] = (), **fields) -> AlertRule:
    made = AlertRule.objects.create(name=f"{kind} rule", kind=kind, **fields)
    made.channels.set(channels)
    return made


def evaluate(capture) -> tuple[int, int]:
    with capture(execute=True):
        result = services.evaluate_all()
    return result["opened"], result["closed"]


def summaries(event_type: str) -> list[str]:
    return [event["data"]["summary"] for event in streams.recent(event_type, 100)]


@pytest.mark.django_db
def test_a_stale_agent_alerts_once_and_its_recovery_closes_it(agent, eager, django_capture_on_commit_callbacks):
    oncall = NotificationChannel.objects.create(name="oncall", kind="email", target="ops@example.com")
    rule("agent_stale", [oncall])
    go_silent(agent)
    with django_capture_on_commit_callbacks(execute=True):
        assert heartbeats.sweep() == ["alpha"]
    assert evaluate(django_capture_on_commit_callbacks) == (1, 0)
    assert evaluate(django_capture_on_commit_callbacks) == (0, 0)  # still stale: no second alert
    assert len(mail.outbox) == 1 and mail.outbox[0].subject.startswith("[alert] alpha is stale: no heartbeat since ")
    assert len(summaries("alert.opened")) == 1

    assert agent.post("/api/v1/agents/alpha/heartbeat", {}, format="json").status_code == 200  # recovers
    assert evaluate(django_capture_on_commit_callbacks) == (0, 1)
    assert evaluate(django_capture_on_commit_callbacks) == (0, 0)
    assert mail.outbox[1].subject.startswith("[resolved] alpha is stale") and mail.outbox[1].to == ["ops@example.com"]
    assert streams.recent("alert.closed", 10)[0]["data"]["closed_at"] is not None

    go_silent(agent)  # a second spell: a second alert
    heartbeats.sweep()
    assert evaluate(django_capture_on_commit_callbacks) == (1, 0)
    assert Alert.objects.count() == 2 and Alert.objects.filter(closed_at__isnull=True).count() == 1


@pytest.mark.django_db
def test_failed_runs_alert_per_agent_and_job_until_one_succeeds(eager, django_capture_on_commit_callbacks):
    now = timezone.now()
    with http_receiver() as (url, received):
        hook = NotificationChannel.objects.create(name="hook", kind="webhook", target=url)
        rule("run_failed", [hook], agents="crawl*", job_type="translate")
        make_run("crawler-1", job_type="translate", status="failed", end_time=now, error_summary="boom")
        make_run("crawler-1", job_type="index", status="failed", end_time=now)  # another job type
        make_run("writer", job_type="translate", status="timeout", end_time=now)  # another agent
        assert evaluate(django_capture_on_commit_callbacks) == (1, 0)
        make_run("crawler-1", job_type="translate", status="timeout", end_time=now + timedelta(seconds=1))
        assert evaluate(django_capture_on_commit_callbacks) == (0, 0)  # failing still: the same alert
        make_run("crawler-1", job_type="translate", status="success", end_time=now + timedelta(seconds=2))
        assert evaluate(django_capture_on_commit_callbacks) == (0, 1)
        assert evaluate(django_capture_on_commit_callbacks) == (0, 0)
    bodies = [json.loads(r["body"]) for r in received]
    assert [b["topic"] for b in bodies] == ["alert.opened", "alert.closed"]
    assert bodies[0]["data"]["subject"] == "run:crawler-1/translate" and "boom" in bodies[0]["data"]["summary"]


@pytest.mark.django_db
def test_an_error_rate_over_the_threshold_alerts_and_closes_below_it(django_capture_on_commit_callbacks):
    rule("error_rate", threshold=30, window_minutes=15, min_runs=5)
    now = timezone.now()
    for index in range(10):
        make_run("alpha", status="failed" if index < 4 else "success", end_time=now)
    for _ in range(3):
        make_run("beta", status="failed", end_time=now)  # 100%, but fewer than min_runs
    make_run("alpha", status="failed", end_time=now - timedelta(minutes=30))  # outside the window
    assert evaluate(django_capture_on_commit_callbacks) == (1, 0)
    assert summaries("alert.opened") == ["alpha: 40% of 10 runs failed in the last 15 min (threshold 30%)"]
    for _ in range(10):
        make_run("alpha", status="success", end_time=now)
    assert evaluate(django_capture_on_commit_callbacks) == (0, 1)  # 4 of 20


@pytest.mark.django_db
def test_todays_llm_cost_over_the_limit_alerts_per_agent_or_model(django_capture_on_commit_callbacks):
    per_agent = rule("llm_cost", threshold=5, per="agent")
    per_model = AlertRule.objects.create(name="per model", kind="llm_cost", threshold=6, per="model", agents="a*")
    now = timezone.now()
    usage = [("alpha", 3, now), ("alpha", 2.5, now), ("alpha", 50, now - timedelta(days=1)), ("beta", 4, now), ("atlas", 1, now)]
    for index, (agent, cost, when) in enumerate(usage):
        LlmUsage.objects.create(event_id=f"u{index}", agent_name=agent, model="opus", cost=Decimal(cost), timestamp=when)
    assert evaluate(django_capture_on_commit_callbacks) == (2, 0)
    by_rule = {alert.rule: alert for alert in Alert.objects.all()}
    assert (by_rule[per_agent].subject, by_rule[per_agent].details["cost"]) == ("agent:alpha", 5.5)
    assert by_rule[per_agent].summary == "LLM cost of agent alpha today: $5.50 (limit $5)"
    # Per model, of the agents matching a*: 3 + 2.5 + 1 (beta's 4 is not theirs).
    assert (by_rule[per_model].subject, by_rule[per_model].details["cost"]) == ("model:opus", 6.5)


@pytest.mark.django_db
def test_an_approval_pending_too_long_alerts_until_decided(django_capture_on_commit_callbacks, admin_user):
    rule("approval_pending", threshold=60)
    fresh = approvals.create("alpha", "deploy", {}, 600)
    old = approvals.create("beta", "deploy", {}, 600)
    ApprovalRequest.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(seconds=120))
    assert evaluate(django_capture_on_commit_callbacks) == (1, 0)
    assert Alert.objects.get().subject == f"approval:{old.request_id}"
    approvals.decide(old, approved=True, user=admin_user)
    assert evaluate(django_capture_on_commit_callbacks) == (0, 1)
    fresh.refresh_from_db()
    assert fresh.status == "pending" and not Alert.objects.filter(subject=f"approval:{fresh.request_id}").exists()


@pytest.mark.django_db
def test_a_volume_spike_alerts_and_calms_down(django_capture_on_commit_callbacks):
    spike = rule("volume_spike", threshold=100, window_minutes=1, event_type="signal.sent")
    key, redis = VOLUME_SAMPLES_KEY.format(rule=spike.pk), get_redis()

    def time_passes(seconds: float) -> None:
        """The samples are what the rule remembers of time: make them older."""
        for index, raw in enumerate(redis.lrange(key, 0, -1)):
            at, count = json.loads(raw)
            redis.lset(key, index, json.dumps([at - seconds, count]))

    assert evaluate(django_capture_on_commit_callbacks) == (0, 0)  # one sample: no rate yet
    time_passes(50)
    events.publish_now([events.Event("signal.sent", {"n": n}) for n in range(500)])
    assert evaluate(django_capture_on_commit_callbacks) == (1, 0)  # 500 in 50 s: 600 a minute
    assert Alert.objects.get().subject == "events:signal.sent"
    assert evaluate(django_capture_on_commit_callbacks) == (0, 0)  # a moment later: too short a span to judge
    time_passes(90)
    assert evaluate(django_capture_on_commit_callbacks) == (0, 0)  # the old samples left the window
    time_passes(40)
    assert evaluate(django_capture_on_commit_callbacks) == (0, 1)  # 40 quiet seconds close it


@pytest.mark.django_db(transaction=True)
def test_concurrent_evaluations_open_one_alert(agent):
    rule("agent_stale")
    go_silent(agent)
    heartbeats.sweep()
    results = at_once(lambda: services.evaluate_all()["opened"])
    assert sorted(results) == [0] * 5 + [1]
    assert Alert.objects.count() == 1 and len(streams.recent("alert.opened", 10)) == 1


@pytest.mark.django_db
def test_long_subjects_stay_unique():
    failed = rule("run_failed")
    long_job = "j" * 600
    subjects = [f"run:alpha/{long_job}{n}" for n in range(2)]
    alerts = [services._open(failed, subject, Finding("s", {})) for subject in subjects]
    assert all(len(alert.subject) == 500 for alert in alerts) and alerts[0].subject != alerts[1].subject
