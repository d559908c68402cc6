"""`manage.py doctor` against real components, healthy and broken: a stopped Redis, an unreachable
PostgreSQL, a database without migrations, a damaged SQLite file, a Redis that evicts, no worker,
no beat."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

import pytest

from core.redis import get_redis
from core.tasks import BACKGROUND_TICK_KEY
from operations import doctor
from operations.embedded_redis import EmbeddedRedis, free_port
from tests.services import ROOT, celery_processes


def run_doctor(env: dict, **overrides: str) -> tuple[int, dict[str, dict]]:
    done = subprocess.run(
        [sys.executable, "manage.py", "doctor", "--json"],
        cwd=ROOT,
        env={**env, **overrides},
        capture_output=True,
        text=True,
        timeout=60,
    )
    checks = {check["name"]: check for check in json.loads(done.stdout)}
    return done.returncode, checks


def statuses(checks: dict[str, dict]) -> dict[str, str]:
    return {name: check["status"] for name, check in checks.items()}


def wait_for_tick(timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while get_redis().get(BACKGROUND_TICK_KEY) is None:
        assert time.monotonic() < deadline, "the worker never ran beat's tick"
        time.sleep(0.2)


def test_a_sound_installation_passes_every_check(server_env, settings):
    env = {**server_env, "WORKER_TICK_SECONDS": "1", "SECURE_SSL_REDIRECT": "true"}
    with celery_processes(env):
        wait_for_tick()
        code, checks = run_doctor(env)
    expected = ["configuration", "database", "migrations", "redis", "worker", "beat", "channel layer", "clock skew"]
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        expected.insert(2, "database integrity")
    assert list(checks) == expected
    assert statuses(checks) == dict.fromkeys(expected, "OK"), checks
    assert code == 0
    assert "noeviction" in checks["redis"]["detail"] and "answered" in checks["worker"]["detail"]


def test_beat_ticks_as_it_starts_so_the_first_check_after_make_run_passes(server_env):
    env = {**server_env, "WORKER_TICK_SECONDS": "3600"}  # the periodic tick: an hour away
    with celery_processes(env):
        wait_for_tick()
        _, checks = run_doctor(env)
    assert checks["beat"]["status"] == "OK", checks["beat"]


def test_a_stopped_redis_fails_redis_and_everything_that_needs_it(server_env, tmp_path):
    stopped = EmbeddedRedis(tmp_path)
    stopped.start()
    stopped.stop()
    code, checks = run_doctor(server_env, REDIS_URL=f"redis://127.0.0.1:{stopped.port}/0")
    assert code == 1
    assert checks["redis"]["status"] == "FAIL" and "ConnectionError" in checks["redis"]["detail"]
    for name in ("worker", "beat", "channel layer", "clock skew"):
        assert checks[name] == {"name": name, "status": "FAIL", "detail": "not checked: Redis is not reachable"}
    assert checks["database"]["status"] == checks["migrations"]["status"] == "OK"


def test_an_unreachable_database_fails_database_and_migrations(server_env):
    # Without the pool: with it, the connection attempt waits out the pool's 10 s timeout first.
    url = f"postgres://postgres@127.0.0.1:{free_port()}/telemetry"
    code, checks = run_doctor(server_env, DATABASE_URL=url, DATABASE_POOL="false")
    assert code == 1
    assert checks["database"]["status"] == "FAIL" and "OperationalError" in checks["database"]["detail"]
    assert checks["migrations"]["detail"] == "not checked: the database is not reachable"
    assert checks["redis"]["status"] == "OK"


def test_an_unmigrated_database_says_to_migrate(server_env, tmp_path):
    code, checks = run_doctor(server_env, DATABASE_URL=f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    assert code == 1
    assert checks["database"]["status"] == checks["database integrity"]["status"] == "OK"
    assert checks["migrations"]["status"] == "FAIL"
    assert "not applied" in checks["migrations"]["detail"] and "python manage.py migrate" in checks["migrations"]["detail"]


def test_a_damaged_sqlite_file_fails_the_integrity_check(server_env, tmp_path):
    path = tmp_path / "damaged.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        db.execute("CREATE INDEX t_body ON t (body)")
        db.executemany("INSERT INTO t (body) VALUES (?)", [(f"row {i} " * 20,) for i in range(2000)])
    db.close()
    data = bytearray(path.read_bytes())
    page = 4096
    data[10 * page + 100 : 10 * page + 1100] = b"\xff" * 1000  # a page in the middle of the table
    path.write_bytes(bytes(data))
    code, checks = run_doctor(server_env, DATABASE_URL=f"sqlite:///{path}")
    assert code == 1
    assert checks["database integrity"]["status"] == "FAIL"
    assert "damaged" in checks["database integrity"]["detail"]


def test_sqlite_without_wal_or_busy_timeout_is_a_warning():
    cursor = sqlite3.connect(":memory:", timeout=0.5).cursor()
    status, detail = doctor._sqlite_settings(cursor)
    assert status == doctor.WARN
    assert "journal_mode=memory" in detail and "not in WAL mode" in detail and "busy timeout" in detail


def test_a_redis_that_evicts_keys_fails(db):
    redis = get_redis()
    before = redis.config_get("maxmemory-policy")["maxmemory-policy"]
    redis.config_set("maxmemory-policy", "allkeys-lru")
    try:
        check = doctor._run("redis", doctor.redis)
    finally:
        redis.config_set("maxmemory-policy", before)
    assert check.status == doctor.FAIL
    assert "maxmemory-policy is allkeys-lru, must be noeviction" in check.detail
    assert doctor._run("redis", doctor.redis).status == doctor.OK


def test_no_worker_fails_and_beat_cannot_be_judged_without_one(db):
    check = doctor._run("worker", doctor.workers)
    assert check.status == doctor.FAIL and "no Celery worker answered" in check.detail
    assert doctor._run("beat", lambda: doctor.beat(workers_ok=False)).status == doctor.WARN


def test_a_worker_without_beat_fails_beat(server_env):
    with celery_processes(server_env, beat=False):
        deadline = time.monotonic() + 30
        while (worker := doctor._run("worker", doctor.workers)).status != doctor.OK:
            assert time.monotonic() < deadline, worker.detail
        never = doctor._run("beat", lambda: doctor.beat(workers_ok=True))
    assert never.status == doctor.FAIL and "never ran" in never.detail
    get_redis().set(BACKGROUND_TICK_KEY, time.time() - 100)
    late = doctor._run("beat", lambda: doctor.beat(workers_ok=True))
    assert late.status == doctor.FAIL and "last ran 100 s ago" in late.detail


def test_configuration_errors_fail_and_deploy_warnings_warn(settings):
    settings.DEBUG = False
    settings.CSRF_TRUSTED_ORIGINS = ["telemetry.example.com"]  # no scheme: Django refuses it
    with pytest.raises(doctor.Failed, match=r"4_0\.E001"):
        doctor.configuration()
    settings.CSRF_TRUSTED_ORIGINS = []
    settings.SECURE_SSL_REDIRECT = False
    status, detail = doctor.configuration()
    assert status == doctor.WARN and "security.W008" in detail


@pytest.mark.parametrize(
    ("skews", "status"),
    [
        ({"Redis": 0.004, "PostgreSQL": -0.2}, doctor.OK),
        ({"Redis": 2.5}, doctor.WARN),
        ({"Redis": 0.0, "PostgreSQL": -30.0}, doctor.FAIL),
    ],
)
def test_clock_skew_thresholds(skews, status):
    assert doctor._run("clock skew", lambda: doctor.clock_skew(skews)).status == status


def test_measured_skew_on_one_host_is_small(db):
    skews = doctor.measured_skews()
    assert "Redis" in skews and all(abs(skew) < doctor.CLOCK_WARN_SECONDS for skew in skews.values())
