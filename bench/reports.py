"""Reports and the analytics page on ROWS runs and ROWS LLM usage records (spread over 90 days, 50
agents): each report of `telemetry` and the analytics figures, over the default 30 days and over
everything, beside the raw limit of the same run: a bare COUNT(*) and a full SUM() scan of the
same table. Target: every report and the page under 1 s.

Reports read daily rollups (quality.rollups). Each timed call starts with today noted as changed, as
in production where agents keep writing, so it includes recomputing today's rollups; the first
build of all 90 days is timed on its own."""

from __future__ import annotations

import random
import time
import uuid
from datetime import timedelta

from bench.harness import environment

ROWS = 1_000_000
CHUNK = 5000
DAYS = 90
TIERS = [("claude-3-5-haiku", "cheap"), ("claude-sonnet-4", "capable"), ("claude-opus-4", "premium")]


def fill(rows: int) -> float:
    """ROWS runs, ROWS usage records and a few thousand ratings, inserted as the batch API does;
    returns the seconds it took."""
    from django.utils import timezone

    from core.fastpaths.bulk_insert import insert_new
    from quality.models import FeedbackEntry, LlmUsage
    from runs.models import Run

    rng = random.Random(7)
    now = timezone.now()
    started = time.perf_counter()
    for offset in range(0, rows, CHUNK):
        runs, calls = [], []
        for index in range(offset, min(offset + CHUNK, rows)):
            at = now - timedelta(seconds=rng.uniform(0, DAYS * 86400))
            status = rng.choices(["success", "failed", "partial", "running"], weights=[85, 8, 4, 3])[0]
            runs.append(
                {
                    "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
                    "run_id": f"run-{index}",
                    "agent_name": f"agent-{index % 50}",
                    "job_type": f"job-{index % 20}",
                    "status": status,
                    "start_time": at,
                    "created_at": at,
                    "duration_ms": int(rng.expovariate(1 / 20_000)),
                    "items_succeeded": rng.randint(0, 50),
                    "items_failed": rng.randint(0, 3),
                }
            )
            model, tier = rng.choices(TIERS, weights=[6, 3, 1])[0]
            calls.append(
                {
                    "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
                    "timestamp": at,
                    "agent_name": f"agent-{index % 50}",
                    "workflow": f"job-{index % 20}",
                    "stage": f"stage-{index % 7}",
                    "task_type": f"task-{index % 12}",
                    "model": model,
                    "tier": tier,
                    "input_tokens": rng.randint(100, 8000),
                    "output_tokens": rng.randint(50, 2000),
                    "cache_read_tokens": rng.choice([0, 0, 2000]),
                    "cost": round(rng.uniform(0.0001, 0.05), 6),
                    "latency_ms": rng.randint(200, 5000),
                    "success": rng.random() > 0.05,
                    "fallback": rng.random() < 0.03,
                }
            )
        insert_new(Run, runs)
        insert_new(LlmUsage, calls)
    ratings = [
        FeedbackEntry(
            event_id=f"f{i}",
            workflow_name=f"job-{i % 20}",
            stage_name=f"stage-{i % 7}",
            tier=TIERS[i % 3][1],
            quality_score=rng.random(),
            timestamp=now - timedelta(days=rng.uniform(0, DAYS)),
        )
        for i in range(20_000)
    ]
    FeedbackEntry.objects.bulk_create(ratings, batch_size=2000)
    return time.perf_counter() - started


def timed(call, repeat: int = 2, before=lambda: None) -> float:
    """The best of `repeat` runs, in seconds (the first also warms the database's cache)."""
    best = float("inf")
    for _ in range(repeat):
        before()
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def run(db: str) -> dict:
    with environment(db):
        from django.db import connection
        from django.db.models import Count, Sum
        from django.test import Client
        from django.utils import timezone

        from quality import reports, rollups
        from quality.analytics import figures, period_of
        from quality.models import ChangedDay, LlmUsage
        from runs.models import Run

        loaded = fill(ROWS)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        raw = {
            "count_runs": timed(lambda: Run.objects.count()),
            "sum_usage_cost": timed(lambda: LlmUsage.objects.aggregate(Sum("cost"), Count("id"))),
        }
        started = time.perf_counter()
        rollups.rebuild()
        build = time.perf_counter() - started

        def today_changed():
            ChangedDay.note(timezone.now())

        timings = {"recompute today's rollups": timed(rollups.refresh, before=today_changed)}
        for name, report in reports.REPORTS.items():
            if name in reports.WITHOUT_PERIOD:
                continue
            for days in (30, DAYS):
                timings[f"{name} --days {days}"] = timed(lambda report=report, days=days: report(days=days), before=today_changed)
        for label, query in (
            ("analytics, 30 days", {}),
            ("analytics, 90 days", {"from": "2000-01-01"}),
            ("analytics, one agent", {"agent": "agent-7"}),
        ):
            timings[label] = timed(lambda query=query: figures(period_of(query)), before=today_changed)
        from django.contrib.auth import get_user_model

        admin = get_user_model().objects.create_superuser("bench-admin", password="x")
        client = Client()
        client.force_login(admin)
        timings["GET /analytics/ (page, rendered)"] = timed(
            lambda: client.get("/analytics/", HTTP_HOST="127.0.0.1"), before=today_changed
        )
    return {"database": db, "rows": ROWS, "fill_s": loaded, "build_s": build, "raw": raw, "timings": timings}


def report(result: dict) -> str:
    raw = result["raw"]
    scan = raw["sum_usage_cost"]
    lines = [
        f"reports on {result['database']}: {result['rows']:,} runs and {result['rows']:,} LLM usage records over {DAYS} days "
        f"(filled in {result['fill_s']:.0f} s); best of 2",
        f"  raw COUNT(*) of runs             {raw['count_runs'] * 1000:8.1f} ms",
        f"  raw SUM(cost), COUNT(*) of usage {scan * 1000:8.1f} ms",
        f"  first build of the rollups of all {DAYS} days: {result['build_s']:.1f} s",
        "  each figure below includes recomputing today's rollups (as when agents keep writing):",
    ]
    for name, seconds in result["timings"].items():
        flag = "" if seconds < 1 else "   !!! over 1 s"
        lines.append(f"  {name:36} {seconds * 1000:8.1f} ms = {seconds / scan:5.1f}x the raw scan (target < 1 s){flag}")
    return "\n".join(lines)


if __name__ == "__main__":
    from bench.results import main

    main("reports", run, report)
