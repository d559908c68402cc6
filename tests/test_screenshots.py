"""The README's pictures, taken of the real pages while `manage.py demo` drives the real server, as
a newcomer sees them after `make run` and `make demo`. Each page is checked for what its picture
is meant to show. `make screenshots` keeps them in docs/images/; otherwise they go to a temporary
folder."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from quality.models import FeedbackEntry, LlmUsage
from tests.conftest import logged_in_page
from tests.runs.factories import make_run
from tests.services import ROOT, asgi_server, celery_processes

pytestmark = pytest.mark.django_db(transaction=True)

VIEWPORT = {"width": 1400, "height": 860}
AGENTS = ["crawler", "indexer", "summariser", "reviewer", "publisher"]
MODELS = {"cheap": "claude-3-5-haiku", "capable": "claude-sonnet-4", "premium": "claude-opus-4"}


@pytest.fixture
def pictures(tmp_path) -> Path:
    folder = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def fortnight(django_user_model):
    """Two weeks of a fleet's history for the analytics page, and an operator who may decide
    approvals; made before the browser starts (its event loop keeps the ORM out of this thread)."""
    user = django_user_model.objects.create_user("operator", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(codename__startswith="view_") | Permission.objects.filter(codename="decide_approvalrequest")
    )
    rng, now = random.Random(7), timezone.now()
    for day in range(14):
        when = now - timedelta(days=day, hours=1)
        for agent in AGENTS:
            for _ in range(rng.randint(3, 9)):
                failed = rng.random() < 0.12
                make_run(
                    agent,
                    job_type=rng.choice(["crawl", "index", "summarise", "review"]),
                    created_at=when,
                    status="failed" if failed else "success",
                    duration_ms=rng.randint(800, 240_000),
                    items_succeeded=rng.randint(5, 60),
                    items_failed=rng.randint(1, 4) if failed else 0,
                )
        usage = []
        for index in range(rng.randint(20, 40)):
            tier = rng.choices(list(MODELS), weights=[6, 3, 1])[0]
            usage.append(
                LlmUsage(
                    event_id=f"u-{day}-{index}",
                    agent_name=rng.choice(AGENTS),
                    model=MODELS[tier],
                    tier=tier,
                    workflow="docs",
                    stage=rng.choice(["draft", "review", "summarise"]),
                    input_tokens=rng.randint(500, 8000),
                    output_tokens=rng.randint(100, 1500),
                    cost={"cheap": 0.002, "capable": 0.02, "premium": 0.11}[tier] * rng.uniform(0.5, 2),
                    timestamp=when,
                )
            )
        LlmUsage.objects.bulk_create(usage)
        for index, stage in enumerate(["draft", "review", "summarise"]):
            score = rng.uniform(0.7, 0.95)
            FeedbackEntry.objects.create(
                event_id=f"f-{day}-{index}", workflow_name="docs", stage_name=stage, tier="cheap", quality_score=score
            )
    return user


def test_the_pages_of_a_first_start_with_the_demo_running(server_env, fortnight, browser, pictures):
    with asgi_server(server_env, workers=2) as base, celery_processes(server_env):
        demo = subprocess.Popen(
            [sys.executable, "manage.py", "demo", "--url", base, "--agents", "5", "--seconds", "60"],
            cwd=ROOT,
            env=server_env,
            stdout=subprocess.DEVNULL,
        )
        try:
            page = logged_in_page(browser, f"{base}/live/", "operator", viewport=VIEWPORT)
            page.wait_for_url(f"{base}/live/")
            page.wait_for_selector("#connection.connected")
            page.wait_for_function("document.querySelectorAll('#agents tr[data-agent]').length >= 5", timeout=30_000)
            page.wait_for_function("document.querySelectorAll('#feed li[data-type]').length >= 12", timeout=30_000)
            # Runs ended (some seconds of events for the chart), heartbeats folded into the agents table.
            page.wait_for_function("document.querySelectorAll('#feed li[data-type=\"run.ended\"]').length >= 5", timeout=45_000)
            assert page.locator("#feed li[data-type='agent.heartbeat']").count() == 0
            assert float(page.inner_text("#rate")) > 0
            page.screenshot(path=str(pictures / "live.png"), animations="disabled")  # (no new event's flash)

            # demo-2 asks for approval after each of its runs; its request, as a reviewer opens it.
            deadline = time.monotonic() + 45
            while True:
                page.goto(f"{base}/admin/approvals/approvalrequest/?status__exact=pending")
                if page.locator("#result_list tbody tr").count():
                    break
                assert time.monotonic() < deadline, "the demo asked for no approval"
                time.sleep(1)
            page.click("#result_list tbody tr:first-child th a")
            page.fill("#id_reason", "Checked the pages: go ahead.")
            assert page.locator("#approve").is_visible() and page.locator("#reject").is_visible()
            page.screenshot(path=str(pictures / "approval.png"))
        finally:
            demo.terminate()
            demo.wait(timeout=30)

        page.goto(f"{base}/analytics/")
        page.wait_for_function("document.body.dataset.chartsDrawn === '9'")
        drawn = dict(page.evaluate("Object.values(Chart.instances).map(c => [c.canvas.id, c.data.datasets[0].data.length])"))
        assert drawn["chart-activity"] >= 14 and drawn["chart-success"] >= 5
        page.screenshot(path=str(pictures / "analytics.png"))
