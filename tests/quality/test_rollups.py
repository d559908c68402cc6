"""Daily rollups: the same figures as the rows they sum, kept current by every write path, and safe
against writes and refreshes that overlap."""

from __future__ import annotations

import random
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.db.models import Count, Sum
from django.utils import timezone

from quality import reports, rollups
from quality.analytics import figures
from quality.models import ChangedDay, LlmUsage, RunDay, UsageDay, UsageStageDay
from quality.rollups import Period
from runs.models import Run
from tests.runs.factories import make_run, run_payload

pytestmark = pytest.mark.django_db


def rolled_up_runs(period: Period) -> dict:
    rows = period.run_days().values("agent_name", "status").annotate(runs=Sum("run_count"), items=Sum("items_succeeded_sum"))
    return {(r["agent_name"], r["status"]): (r["runs"], r["items"]) for r in rows}


def counted_runs(period: Period) -> dict:
    rows = period.runs().values("agent_name", "status").annotate(runs=Count("id"), items=Sum("items_succeeded"))
    return {(r["agent_name"], r["status"]): (r["runs"], r["items"]) for r in rows}


def test_rollups_sum_to_what_the_rows_hold():
    rng = random.Random(3)
    now = timezone.now()
    for index in range(300):
        at = now - timedelta(hours=rng.uniform(0, 24 * 12))
        make_run(
            f"agent-{index % 4}",
            created_at=at,
            job_type=f"job-{index % 3}",
            status=rng.choice(["running", "success", "failed"]),
            duration_ms=rng.choice([10, 3_000, 70_000, 4_000_000]),
            items_succeeded=rng.randint(0, 9),
        )
        LlmUsage.objects.create(
            event_id=f"u{index}",
            timestamp=at,
            agent_name=f"agent-{index % 4}",
            workflow=f"w{index % 2}",
            stage=f"s{index % 5}",
            model=rng.choice(["m1", "m2"]),
            tier=rng.choice(["cheap", "premium"]),
            input_tokens=rng.randint(1, 1000),
            cost=Decimal(rng.randint(1, 1000)) / 1000,
            fallback=rng.random() < 0.2,
        )
    for period in (Period.last(7), Period.last(30), Period(Period.last(7).start, Period.last(7).end, "agent-2")):
        assert rolled_up_runs(period) == counted_runs(period) != {}
        by_model = period.usage_days().values("model").annotate(cost=Sum("cost_sum"), tokens=Sum("input_tokens_sum"))
        counted = period.usage().values("model").annotate(cost=Sum("cost"), tokens=Sum("input_tokens"))
        assert {r["model"]: (r["cost"], r["tokens"]) for r in by_model} == {r["model"]: (r["cost"], r["tokens"]) for r in counted}
    week = Period.last(7)
    by_stage = week.stage_days().values("stage").annotate(fallbacks=Sum("fallback_count"), cost=Sum("fallback_cost_sum"))
    counted = week.usage().filter(fallback=True).values("stage").annotate(fallbacks=Count("id"), cost=Sum("cost"))
    assert {r["stage"]: (r["fallbacks"], r["cost"]) for r in by_stage if r["fallbacks"]} == {
        r["stage"]: (r["fallbacks"], r["cost"]) for r in counted
    }
    ended = week.runs().exclude(status="running")
    durations = [ended.filter(duration_ms=ms).count() for ms in (10, 3_000, 70_000, 4_000_000)]
    assert figures(week)["durations"]["runs"] == [durations[0], durations[1], 0, 0, durations[2], 0, durations[3]]
    assert not ChangedDay.objects.filter(day__gte=Period.last(30).start).exists()


def test_every_write_path_keeps_the_figures_current(agent, admin_client):
    def totals() -> tuple:
        found = figures(Period.last(30))["totals"]
        return found["runs"], found["succeeded"], found["calls"]

    old, new = run_payload(created_at=(timezone.now() - timedelta(days=3)).isoformat()), run_payload()
    assert agent.post("/api/v1/runs/batch", [old, new], format="json").status_code == 200
    assert totals() == (2, 0, 0)
    assert agent.patch(f"/api/v1/runs/{old['event_id']}", {"status": "success"}, format="json").status_code == 200
    assert totals() == (2, 1, 0)
    agent.post("/api/v1/ingest", [{"kind": "end", "event_id": new["event_id"], "status": "success"}], format="json")
    usage = {"kind": "usage", "event_id": "u1", "agent_name": "alpha", "model": "m", "input_tokens": 5}
    agent.post("/api/v1/ingest", [usage], format="json")
    assert totals() == (2, 2, 1)
    pks = [str(pk) for pk in Run.objects.values_list("pk", flat=True)]
    admin_client.post(
        "/admin/runs/run/", {"action": "bulk_edit", "_selected_action": pks, "field": "status", "value": "failed", "apply": "1"}
    )
    assert totals() == (2, 0, 1)
    one = Run.objects.get(event_id=old["event_id"])
    admin_client.post("/admin/runs/run/", {"action": "delete_selected", "_selected_action": [one.pk], "post": "yes"})
    assert totals() == (1, 0, 1)
    Run.objects.get(event_id=new["event_id"]).delete()
    LlmUsage.objects.get(event_id="u1").delete()
    assert totals() == (0, 0, 0)


def test_reset_and_the_rollup_command(agent, capsys):
    make_run("a", created_at=timezone.now() - timedelta(days=40), status="success")
    make_run("a", status="success")
    RunDay.objects.all().delete()  # as if the rollups had been lost
    ChangedDay.objects.all().delete()
    call_command("telemetry", "rollup", "--rebuild")
    assert "Recomputed the rollups of 41 day(s)." in capsys.readouterr().out
    assert reports.agent_performance(days=60).rows[0][1] == 2
    reports.reset(include_runs=True)
    assert not RunDay.objects.exists() and not UsageDay.objects.exists() and not UsageStageDay.objects.exists()


@pytest.fixture
def postgres(transactional_db):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite lets one writer at a time, so writes and refreshes cannot overlap there")


def in_thread(work) -> threading.Thread:
    def run():
        try:
            work()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_write_that_commits_during_a_refresh_is_counted_next_time(postgres):
    from django.db import transaction

    make_run("a", status="success")
    inside, release = threading.Event(), threading.Event()

    def slow_writer():
        with transaction.atomic():
            make_run("a", status="success")
            inside.set()
            release.wait(10)

    writer = in_thread(slow_writer)
    inside.wait(10)
    today = Period.last(1)
    assert rolled_up_runs(today) == {("a", "success"): (1, 0)}  # the uncommitted run is not seen
    release.set()
    writer.join()
    assert rolled_up_runs(today) == {("a", "success"): (2, 0)}  # its note outlived the refresh


def test_concurrent_refreshes_leave_one_set_of_rows(postgres):
    for index in range(200):
        make_run(f"a{index % 7}", status="success", created_at=timezone.now() - timedelta(days=index % 5))
    start = threading.Barrier(4)

    def refresh():
        start.wait(10)
        rollups.refresh()

    for thread in [in_thread(refresh) for _ in range(4)]:
        thread.join()
    rollups.refresh()
    assert RunDay.objects.count() == 35  # 7 agents on 5 days
    assert rolled_up_runs(Period.last(5)) == counted_runs(Period.last(5))
