"""`make run`'s processes as the Procfile has them: the embedded Redis, web, and one Celery worker
that runs beat in a thread. They come up, serve /health, beat's schedule ticks in that worker (no
beat process of its own), and doctor finds worker and beat OK. bench.footprint reads the same
process tree: its reading is checked here too (that it finds them; memory is the bench's business)."""

import json
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from bench.footprint import processes
from tests.services import ROOT, make_run


def last_tick(base: str) -> float:
    """When the worker last ran beat's tick, by /health (seconds since the epoch)."""
    return time.time() - httpx.get(f"{base}/health", timeout=5).json()["worker_and_beat"]["last_tick_seconds_ago"]


@pytest.mark.timeout(300)
def test_make_run_serves_and_its_one_worker_runs_beat(request, tmp_path):
    if request.config.getoption("db") != "sqlite":
        pytest.skip("make run's own database is SQLite: run once, with the SQLite suite")
    with make_run(tmp_path / "var", tmp_path / "make-run.log", WORKER_TICK_SECONDS="1") as (make, base, env):
        found = processes(psutil.Process(make.pid))
        celery = [row for row in found if "celery" in row["command"] and not row["command"].startswith("/bin/sh")]
        assert len(celery) == 1 and "--beat-thread" in celery[0]["command"], celery
        assert {"redis", "web", "worker"} <= {row["process"] for row in found}
        assert all(row["rss_mb"] > 0 and row["pss_mb"] > 0 for row in found)
        first, deadline = last_tick(base), time.monotonic() + 60
        while last_tick(base) < first + 0.5:  # a tick of the schedule, after the one sent at beat's start
            assert time.monotonic() < deadline, "beat's schedule did not tick"
            time.sleep(0.2)
        doctor = subprocess.run(
            [sys.executable, "manage.py", "doctor", "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
    checks = {check["name"]: check for check in json.loads(doctor.stdout)}
    assert checks["worker"]["status"] == "OK" and checks["beat"]["status"] == "OK", checks
