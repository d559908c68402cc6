"""`make demo` against the real server: its agents leave runs, spans, LLM calls, ratings, heartbeats
and an alert."""

from django.core.management import call_command

from alerts.models import Alert
from alerts.tasks import evaluate_alert_rules
from coordination.models import Agent
from quality.models import FeedbackEntry, LlmUsage
from runs.models import Run
from traces.models import Span


def test_the_demo_agents_leave_everything_the_pages_and_reports_show(live_asgi, capsys):
    call_command("demo", "--url", live_asgi, "--agents", "1", "--seconds", "3")
    assert "watch" in capsys.readouterr().out
    run = Run.objects.get(agent_name="demo-1")
    assert run.status == "failed" and run.error_summary and run.events.exists()  # demo-1's first run fails
    spans = Span.objects.filter(agent_name="demo-1")
    root = spans.get(parent_span_id="")
    assert root.run_id == run.pk and root.status == "error" and spans.filter(trace_id=root.trace_id).count() > 1
    calls = LlmUsage.objects.filter(agent_name="demo-1")
    assert calls.exists() and all(call.run_id == run.pk and call.tier in {"cheap", "capable", "premium"} for call in calls)
    assert FeedbackEntry.objects.filter(workflow_name=run.job_type).exists()
    assert Agent.objects.get(agent_id="demo-1").display_name == "Demo 1"
    evaluate_alert_rules()  # as beat does every ALERT_EVALUATE_SECONDS
    alert = Alert.objects.get()
    assert alert.rule.name == "demo: failed runs" and alert.subject == f"run:demo-1/{run.job_type}" and alert.is_open


def test_the_demo_needs_a_running_server(capsys):
    import pytest

    with pytest.raises(SystemExit):
        call_command("demo", "--url", "http://127.0.0.1:9", "--seconds", "1")
    assert "make run" in capsys.readouterr().err
