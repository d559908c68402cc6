"""`make demo` against the real server: its agents leave runs, LLM calls, ratings and heartbeats."""

from django.core.management import call_command

from coordination.models import Agent
from quality.models import FeedbackEntry, LlmUsage
from runs.models import Run


def test_the_demo_agents_leave_everything_the_pages_and_reports_show(live_asgi, capsys):
    call_command("demo", "--url", live_asgi, "--agents", "1", "--seconds", "3")
    assert "watch" in capsys.readouterr().out
    run = Run.objects.get(agent_name="demo-1")
    assert run.status in {"success", "failed"} and run.events.exists()
    calls = LlmUsage.objects.filter(agent_name="demo-1")
    assert calls.exists() and all(call.run_id == run.pk and call.tier in {"cheap", "capable", "premium"} for call in calls)
    assert FeedbackEntry.objects.filter(workflow_name=run.job_type).exists()
    assert Agent.objects.get(agent_id="demo-1").display_name == "Demo 1"


def test_the_demo_needs_a_running_server(capsys):
    import pytest

    with pytest.raises(SystemExit):
        call_command("demo", "--url", "http://127.0.0.1:9", "--seconds", "1")
    assert "make run" in capsys.readouterr().err
