"""`manage.py telemetry export runs|feedback --days N`: only the last N days, today included."""

import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from quality.models import FeedbackEntry
from runs.models import Run
from tests.runs.factories import make_run

pytestmark = pytest.mark.django_db


def exported(tmp_path, *arguments) -> list[dict]:
    path = tmp_path / "export.json"
    call_command("telemetry", "export", *arguments, "--format", "json", "--output", str(path))
    return json.loads(path.read_text())


def test_days_keeps_the_runs_created_in_the_period(tmp_path):
    now = timezone.now()
    for run_id, age in [("today", timedelta(0)), ("last-week", timedelta(days=6)), ("old", timedelta(days=40))]:
        make_run(run_id=run_id)
        Run.objects.filter(run_id=run_id).update(created_at=now - age)
    assert [row["run_id"] for row in exported(tmp_path, "runs", "--days", "7")] == ["today", "last-week"]
    assert [row["run_id"] for row in exported(tmp_path, "runs", "--days", "1")] == ["today"]
    assert [row["run_id"] for row in exported(tmp_path, "runs")] == ["today", "last-week", "old"]


def test_days_keeps_the_feedback_of_the_period(tmp_path):
    now = timezone.now()
    for event_id, age in [("f-today", timedelta(0)), ("f-old", timedelta(days=40))]:
        FeedbackEntry.objects.create(
            event_id=event_id, timestamp=now - age, workflow_name="w", stage_name="s", tier="cheap", quality_score=0.5
        )
    assert [row["event_id"] for row in exported(tmp_path, "feedback", "--days", "30")] == ["f-today"]
    assert [row["event_id"] for row in exported(tmp_path, "feedback")] == ["f-today", "f-old"]


def test_days_must_be_a_whole_positive_number(tmp_path):
    for days in ("0", "1.5", "-2"):
        with pytest.raises(CommandError):
            exported(tmp_path, "runs", "--days", days)
