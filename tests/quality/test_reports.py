"""The telemetry reports on known data (exact figures), as tables, as --json and through the API;
exports that open; reset."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from quality import reports
from quality import services as quality
from quality.models import FeedbackEntry, LlmUsage, ModelPrice
from runs.models import Run, RunEvent
from tests.runs.factories import run_payload

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sonnet_price")]


@pytest.fixture
def calls():
    """Three priced calls: cheap $0.80, capable $3.30 (a fallback, half its input from the
    cache), premium $7.50 (failed)."""
    ModelPrice.objects.update_or_create(
        model="claude-opus-4",
        defaults={
            "tier": "premium",
            "input_per_mtok": 15,
            "output_per_mtok": 75,
            "cache_read_per_mtok": "1.5",
            "cache_write_per_mtok": "18.75",
        },
    )
    ModelPrice.objects.update_or_create(
        model="claude-3-5-haiku",
        defaults={
            "tier": "cheap",
            "input_per_mtok": "0.8",
            "output_per_mtok": 4,
            "cache_read_per_mtok": "0.08",
            "cache_write_per_mtok": 1,
        },
    )
    ModelPrice.objects.filter(tier="premium").exclude(model="claude-opus-4").delete()
    items = [
        {
            "event_id": "u1",
            "agent_name": "a",
            "model": "claude-3-5-haiku",
            "input_tokens": 1_000_000,
            "task_type": "summarise",
            "workflow": "docs",
            "stage": "draft",
        },
        {
            "event_id": "u2",
            "agent_name": "a",
            "model": "claude-sonnet-4",
            "input_tokens": 1_000_000,
            "cache_read_tokens": 1_000_000,
            "task_type": "summarise",
            "workflow": "docs",
            "stage": "draft",
            "fallback": True,
        },
        {
            "event_id": "u3",
            "agent_name": "b",
            "model": "claude-opus-4",
            "output_tokens": 100_000,
            "task_type": "review",
            "success": False,
        },
    ]
    assert quality.ingest_usage(items, lambda agent: True).failed == 0
    return items


def rows_of(report: reports.Report) -> list[dict]:
    return report.to_dict()["rows"]


def test_savings_against_the_priciest_premium_model(calls):
    report = reports.savings()
    assert [(r["tier"], r["cost $"], r["on claude-opus-4 $"], r["saved $"]) for r in rows_of(report)] == [
        ("capable", 3.3, 16.5, 13.2),  # 1M input at $15 + 1M cache reads at $1.50
        ("cheap", 0.8, 15.0, 14.2),
        ("premium", 7.5, 7.5, 0.0),
    ]
    assert report.summary["saved"] == Decimal("27.4") and report.summary["saved_share"] == 0.7026


def test_cache_stats(calls):
    report = reports.cache_stats()
    sonnet = next(r for r in rows_of(report) if r["model"] == "claude-sonnet-4")
    assert (sonnet["hit rate"], sonnet["saved $"]) == (0.5, 2.7)  # 1M reads at $0.30 instead of $3
    assert report.summary["hit_rate"] == 0.3333 and report.summary["saved"] == Decimal("2.7")


def test_task_routing_and_fallbacks(calls):
    routing = {r["task type"]: r for r in rows_of(reports.task_routing())}
    summarise = routing["summarise"]
    assert (summarise["calls"], summarise["cheap share"], summarise["capable share"], summarise["premium share"]) == (
        2,
        0.5,
        0.5,
        0.0,
    )
    assert (summarise["fallback rate"], summarise["cost $"], summarise["$ per call"]) == (0.5, 4.1, 2.05)
    assert (routing["review"]["success rate"], routing["review"]["premium share"]) == (0.0, 1.0)
    fallbacks = reports.fallback_analysis()
    assert fallbacks.summary["fallback_rate"] == 0.3333 and fallbacks.summary["fallback_cost_share"] == 0.2845
    assert rows_of(fallbacks) == [
        {
            "workflow": "docs",
            "stage": "draft",
            "fallback model": "claude-sonnet-4",
            "fallbacks": 1,
            "fallback rate": 1.0,
            "fallback cost $": 3.3,
        }
    ]


def test_agent_performance_and_compare(calls):
    now = timezone.now()
    Run.objects.create(**run_payload(agent_name="a", status="success", duration_ms=1000, items_succeeded=4))
    Run.objects.create(**run_payload(agent_name="a", status="failed", duration_ms=3000))
    Run.objects.create(**run_payload(agent_name="a", status="success", created_at=now - timedelta(days=10)))
    agents = {r["agent"]: r for r in rows_of(reports.agent_performance(days=7))}
    assert agents["a"] == {
        "agent": "a",
        "runs": 2,
        "success rate": 0.5,
        "failed": 1,
        "avg duration s": 2.0,
        "items ok": 4,
        "items failed": 0,
        "model calls": 2,
        "cost $": 4.1,
    }
    assert (agents["b"]["runs"], agents["b"]["model calls"], agents["b"]["cost $"]) == (0, 1, 7.5)
    compared = {r["metric"]: r for r in rows_of(reports.compare(days=7))}
    assert (compared["runs"]["before"], compared["runs"]["last"], compared["runs"]["change"]) == (1, 2, 1.0)
    assert compared["cost $"]["last"] == 11.6


def test_tests_and_test_files():
    for status in ("success", "success", "failed"):
        Run.objects.create(**run_payload(agent_name="ci", job_type="tests", status=status))
    run = Run.objects.create(**run_payload(agent_name="ci", job_type="tests"))
    for index, (file, passed) in enumerate([("a.py", True), ("a.py", True), ("b.py", False), ("b.py", True)]):
        RunEvent.objects.create(run=run, event_id=f"e{index}", event_type="test.file", payload={"file": file, "passed": passed})
    status = reports.test_status()
    assert (status.summary["runs"], status.summary["passed"], status.summary["pass_rate"]) == (4, 2, 0.5)
    files = [(r["file"], r["results"], r["failures"], r["pass rate"]) for r in rows_of(reports.file_test_status())]
    assert files == [("b.py", 2, 1, 0.5), ("a.py", 2, 0, 1.0)]


def test_tier1_status(calls):
    (stage,) = [r for r in rows_of(reports.tier1_status()) if r["workflow"] == "docs"]
    assert (stage["calls"], stage["cheap share"], stage["cheap success"], stage["automated"]) == (2, 0.5, 1.0, False)


def test_the_command_prints_tables_and_json(calls, capsys):
    call_command("telemetry", "savings")
    table = capsys.readouterr().out
    assert "Savings from tier routing against always claude-opus-4" in table and "70.3%" in table and "27.4000" in table
    call_command("telemetry", "show", "--json", "--limit", "2")
    shown = json.loads(capsys.readouterr().out)
    assert len(shown["rows"]) == 2 and shown["summary"]["calls"] == 3
    call_command("telemetry", "features", "--json")
    features = {row["feature"]: row["status"] for row in json.loads(capsys.readouterr().out)["rows"]}
    assert features["database"] == features["redis"] == features["streams"] == "available"
    assert set(features) == {"database", "redis", "streams", "websockets", "worker_and_beat"}


def test_the_reports_api(agent, calls):
    savings = agent.get("/api/v1/reports/savings", {"days": 30}).json()
    assert savings["summary"]["saved"] == 27.4
    assert agent.get("/api/v1/reports/nothing").status_code == 404
    bad = agent.get("/api/v1/reports/show", {"days": "-1"})
    assert bad.status_code == 400 and "days" in bad.json()["error"]["fields"]


def test_exports_open_and_hold_the_rows(calls, tmp_path):
    for fmt in ("csv", "json", "xlsx"):
        call_command("telemetry", "export", "usage", "--format", fmt, "--output", str(tmp_path / f"usage.{fmt}"))
    with open(tmp_path / "usage.csv") as exported:
        assert sorted(row["event_id"] for row in csv.DictReader(exported)) == ["u1", "u2", "u3"]
    assert [row["cost"] for row in json.loads((tmp_path / "usage.json").read_text())] == [
        "7.50000000",
        "3.30000000",
        "0.80000000",
    ]
    from openpyxl import load_workbook

    sheet = load_workbook(tmp_path / "usage.xlsx").active
    table = list(sheet.values)
    assert table[0][:3] == ("id", "event_id", "run_id") and len(table) == 4
    assert {row[1] for row in table[1:]} == {"u1", "u2", "u3"}


def test_reset_asks_first(calls, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(CommandError, match="--yes"):
        call_command("telemetry", "reset")
    assert LlmUsage.objects.count() == 3
    FeedbackEntry.objects.create(event_id="f", workflow_name="w", stage_name="s", tier="cheap", quality_score=1)
    Run.objects.create(**run_payload())
    call_command("telemetry", "reset", "--yes")
    assert (LlmUsage.objects.count(), FeedbackEntry.objects.count(), Run.objects.count()) == (0, 0, 1)
    call_command("telemetry", "reset", "--yes", "--runs")
    assert Run.objects.count() == 0
