"""The analytics page: its figures on known data, filters, exports, and the charts in Chromium."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone
from openpyxl import load_workbook

from quality.analytics import figures, period_of
from quality.models import FeedbackEntry, LlmUsage
from tests.conftest import logged_in_page, make_operator
from tests.runs.factories import make_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def history():
    """Yesterday: alpha 2 runs (one failed); today: alpha 1 run, beta 1; LLM calls and ratings."""
    now = timezone.now()
    yesterday = now - timedelta(days=1)
    make_run("alpha", created_at=yesterday, status="success", duration_ms=500, items_succeeded=10, job_type="crawl")
    make_run("alpha", created_at=yesterday, status="failed", duration_ms=40_000, items_failed=2, job_type="crawl")
    make_run("alpha", created_at=now, status="success", duration_ms=2_000, items_succeeded=5, job_type="index")
    make_run("beta", created_at=now, status="running", job_type="index")
    for index, (tier, cost, when) in enumerate([("cheap", "0.5", yesterday), ("premium", "2", now), ("cheap", "0.25", now)]):
        LlmUsage.objects.create(
            event_id=f"u{index}", agent_name="alpha", model=f"m-{tier}", tier=tier, cost=cost, input_tokens=100, timestamp=when
        )
    for index, (stage, score) in enumerate([("draft", 0.5), ("draft", 0.7), ("review", 1.0)]):
        FeedbackEntry.objects.create(
            event_id=f"f{index}", workflow_name="docs", stage_name=stage, tier="cheap", quality_score=score
        )
    return now


def test_the_figures_of_known_runs(history):
    found = figures(period_of({}))
    assert found["totals"]["runs"] == 4 and found["totals"]["succeeded"] == 2 and float(found["totals"]["cost"]) == 2.75
    assert found["success_by_agent"] == [{"agent": "alpha", "runs": 3, "rate": 2 / 3}, {"agent": "beta", "runs": 1, "rate": 0.0}]
    today, yesterday = history.date().isoformat(), (history - timedelta(days=1)).date().isoformat()
    assert [(row["day"], row["runs"], row["failed"], row["items_succeeded"]) for row in found["activity"]] == [
        (yesterday, 2, 1, 10),
        (today, 2, 0, 5),
    ]
    # 0.5 s, 2 s and 40 s (the running one has no duration yet)
    assert found["durations"]["runs"] == [1, 1, 0, 1, 0, 0, 0]
    assert found["durations"]["labels"][0] == "0 to 1 s" and found["durations"]["labels"][-1] == "over 30 min"
    assert {row["job_type"]: row["runs"] for row in found["job_types"]} == {"crawl": 2, "index": 2}
    assert [(row["day"], row["tier"], row["cost"]) for row in found["cost_by_day"]] == [
        (yesterday, "cheap", 0.5),
        (today, "cheap", 0.25),
        (today, "premium", 2.0),
    ]
    assert [(row["stage"], round(row["avg"], 2), row["ratings"]) for row in found["quality_by_stage"]] == [
        ("draft", 0.6, 2),
        ("review", 1.0, 1),
    ]


def test_filters_by_agent_and_dates(history):
    today = history.date()
    only_beta = figures(period_of({"agent": "beta"}))
    assert only_beta["totals"]["runs"] == 1 and only_beta["totals"]["calls"] == 0
    only_today = figures(period_of({"from": today.isoformat(), "to": today.isoformat()}))
    assert only_today["totals"]["runs"] == 2
    nonsense = period_of({"from": "yesterday", "to": "2026-13-45"})
    assert nonsense.end == timezone.localdate() and (nonsense.end - nonsense.start).days == 29


def test_the_page_is_for_staff_and_exports_the_filtered_runs(client, admin_client, history):
    assert client.get("/analytics/").status_code == 302
    page = admin_client.get("/analytics/", {"agent": "alpha"})
    assert page.status_code == 200 and 'id="analytics-figures"' in page.content.decode()
    exported = admin_client.get("/analytics/export.csv", {"agent": "alpha"})
    rows = list(csv.DictReader(io.StringIO(b"".join(exported.streaming_content).decode())))
    assert len(rows) == 3 and {row["agent_name"] for row in rows} == {"alpha"}
    workbook = admin_client.get("/analytics/export.xlsx")
    book = load_workbook(io.BytesIO(b"".join(workbook.streaming_content)))
    assert book.sheetnames == ["runs", "usage", "feedback"]
    assert [book[name].max_row for name in book.sheetnames] == [5, 4, 4]  # a header and the rows
    assert admin_client.get("/analytics/export.pdf").status_code == 404


@pytest.fixture
def five_days(live_asgi, django_user_model):
    """Runs on each of the last five days and a staff user; made before the browser starts (its
    event loop keeps the ORM out of this thread)."""
    make_operator(django_user_model, "analyst")
    now = timezone.now()
    for day in range(5):
        for index in range(day + 2):
            make_run(
                "alpha" if index % 2 else "beta",
                created_at=now - timedelta(days=day),
                status="failed" if index == 3 else "success",
                duration_ms=1000 * (index + 1),
                items_succeeded=index,
            )
        LlmUsage.objects.create(
            event_id=f"u{day}", agent_name="alpha", model="m", tier="cheap", cost="0.1", timestamp=now - timedelta(days=day)
        )
    return live_asgi


def test_the_charts_render_with_data_in_chromium(five_days, browser, tmp_path):
    live_asgi = five_days
    page = logged_in_page(browser, f"{live_asgi}/analytics/", "analyst", viewport={"width": 1400, "height": 1000})
    page.wait_for_url(f"{live_asgi}/analytics/")
    page.wait_for_function("document.body.dataset.chartsDrawn === '9'")
    drawn = page.evaluate("Object.values(Chart.instances).map(c => [c.canvas.id, c.data.datasets[0].data.length])")
    assert dict(drawn)["chart-activity"] == 5 and dict(drawn)["chart-success"] == 2
    assert page.locator("#chart-activity").bounding_box()["height"] > 100
    page.screenshot(path=str(tmp_path / "analytics.png"), full_page=True)
