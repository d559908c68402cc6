"""`manage.py doctor`: is this installation sound? Each check is tried against the real component
(the installation, the database's settings and its integrity, for our stack).

A check returns (status, detail) or raises: an exception is a FAIL with its reason. Checks that
need a component which just failed say so instead of timing out against it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from celery import current_app
from django.conf import settings
from django.core import checks as system_checks
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from core.features import background_late_after, channel_layer_round_trip, tick_age
from core.redis import get_redis

OK, WARN, FAIL = "OK", "WARN", "FAIL"

MIN_POSTGRES = 14  # Django 5.2's oldest
MIN_REDIS = (6, 2)  # the embedded one; streams and the commands we use are older
SQLITE_MIN_BUSY_TIMEOUT_MS = 5000
CLOCK_WARN_SECONDS = 1.0  # heartbeat times come from each web host's clock, TTLs from Redis's
CLOCK_FAIL_SECONDS = 10.0
WORKER_PING_SECONDS = 2.0


@dataclass
class Check:
    name: str
    status: str  # OK, WARN or FAIL
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


class Failed(Exception):
    """A check's FAIL with a plain explanation (no exception type in front)."""


def _run(name: str, check: Callable[[], tuple[str, str]]) -> Check:
    try:
        status, detail = check()
    except Failed as exc:
        status, detail = FAIL, str(exc)
    except Exception as exc:  # noqa: BLE001 - whatever breaks, the operator needs its reason
        status, detail = FAIL, f"{type(exc).__name__}: {exc}".strip()
    return Check(name, status, detail)


def configuration() -> tuple[str, str]:
    """Django's system checks, with the deployment ones when DEBUG is off."""
    messages = system_checks.run_checks(include_deployment_checks=not settings.DEBUG)
    errors = [m for m in messages if m.is_serious() and not m.is_silenced()]
    warnings = [m for m in messages if not m.is_serious() and not m.is_silenced()]
    if errors:
        raise Failed("; ".join(f"{m.id}: {m.msg}" for m in errors))
    if warnings:
        return WARN, "; ".join(f"{m.id}: {m.msg}" for m in warnings)
    if settings.DEBUG:
        return WARN, "DEBUG is on: fine for development, never in production (the deploy checks run with DEBUG=false)"
    return OK, "production settings pass `check --deploy`"


def database() -> tuple[str, str]:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            return _sqlite_settings(cursor)
        if connection.vendor == "postgresql":
            major = connection.pg_version // 10000
            if major < MIN_POSTGRES:
                raise Failed(f"PostgreSQL {major}: {MIN_POSTGRES} or later is needed")
            cursor.execute("SHOW max_connections")
            return OK, f"PostgreSQL {major} ({connection.settings_dict['HOST']}), max_connections {cursor.fetchone()[0]}"
        cursor.execute("SELECT 1")
        return WARN, f"{connection.vendor} is not a database this server is tested on"


def _sqlite_settings(cursor) -> tuple[str, str]:
    """WAL lets readers run beside the writer; the busy timeout makes writers queue, not fail."""
    cursor.execute("PRAGMA journal_mode")
    journal = cursor.fetchone()[0]
    cursor.execute("PRAGMA busy_timeout")
    busy_ms = cursor.fetchone()[0]
    cursor.execute("SELECT sqlite_version()")
    detail = f"SQLite {cursor.fetchone()[0]}, journal_mode={journal}, busy_timeout={busy_ms} ms"
    problems = []
    if journal.lower() != "wal":
        problems.append("not in WAL mode (a network or in-memory database?): readers will block the writer")
    if busy_ms < SQLITE_MIN_BUSY_TIMEOUT_MS:
        problems.append(f"a busy timeout under {SQLITE_MIN_BUSY_TIMEOUT_MS} ms makes concurrent writers fail")
    return (WARN, f"{detail}: {'; '.join(problems)}") if problems else (OK, detail)


def integrity() -> tuple[str, str]:
    """SQLite's quick_check reads every page."""
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA quick_check")
        problems = [row[0] for row in cursor.fetchall()]
    if problems != ["ok"]:
        raise Failed(f"the database file is damaged: {'; '.join(problems[:5])} (restore a backup: see docs/operations.md)")
    return OK, "PRAGMA quick_check: ok"


def migrations() -> tuple[str, str]:
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan[:5])
        raise Failed(f"{len(plan)} not applied ({names}{', ...' if len(plan) > 5 else ''}): run `python manage.py migrate`")
    return OK, f"all {len(executor.loader.applied_migrations)} applied"


def redis() -> tuple[str, str]:
    client = get_redis()
    version = client.info("server")["redis_version"]
    detail = f"Redis {version} at {client.connection_pool.connection_kwargs.get('host')}"
    if tuple(int(part) for part in version.split(".")[:2]) < MIN_REDIS:
        raise Failed(f"{detail}: {'.'.join(map(str, MIN_REDIS))} or later is needed")
    try:
        policy = client.config_get("maxmemory-policy")["maxmemory-policy"]
    except Exception:  # noqa: BLE001 - managed Redis services often disable CONFIG
        return WARN, f"{detail}; CONFIG is disabled, so check yourself that maxmemory-policy is noeviction"
    if policy != "noeviction":
        raise Failed(f"{detail}: maxmemory-policy is {policy}, must be noeviction (eviction loses Celery tasks and signals)")
    return OK, f"{detail}, maxmemory-policy noeviction"


def workers() -> tuple[str, str]:
    replies = current_app.control.ping(timeout=WORKER_PING_SECONDS)
    names = sorted(name for reply in replies for name in reply)
    if not names:
        raise Failed(f"no Celery worker answered a ping in {WORKER_PING_SECONDS:.0f} s: start `celery -A telemetry_site worker`")
    return OK, f"{len(names)} answered: {', '.join(names)}"


def beat(workers_ok: bool) -> tuple[str, str]:
    """Beat sends a tick every WORKER_TICK_SECONDS that a worker runs: a fresh tick means beat is up."""
    age = tick_age()
    if age is not None and age < background_late_after():
        return OK, f"its tick ran {age:.0f} s ago"
    if not workers_ok:
        return WARN, "cannot tell without a worker (the worker runs the tick beat sends)"
    when = "never ran" if age is None else f"last ran {age:.0f} s ago"
    raise Failed(f"its tick {when}: start exactly one beat (`celery -A telemetry_site beat`)")


def channel_layer() -> tuple[str, str]:
    return OK, channel_layer_round_trip()


def measured_skews() -> dict[str, float]:
    """Seconds each server's clock is ahead of this host's (round trip halved out)."""
    skews = {}
    started = time.time()
    seconds, microseconds = get_redis().time()
    skews["Redis"] = seconds + microseconds / 1e6 - (started + time.time()) / 2
    if connection.vendor == "postgresql":  # SQLite's clock is this host's
        with connection.cursor() as cursor:
            started = time.time()
            cursor.execute("SELECT extract(epoch FROM clock_timestamp())")
            skews["PostgreSQL"] = float(cursor.fetchone()[0]) - (started + time.time()) / 2
    return skews


def clock_skew(skews: dict[str, float]) -> tuple[str, str]:
    detail = ", ".join(f"{name} {skew * 1000:+.0f} ms" for name, skew in skews.items())
    worst = max((abs(skew) for skew in skews.values()), default=0.0)
    if worst > CLOCK_FAIL_SECONDS:
        raise Failed(f"{detail}: clocks disagree by more than {CLOCK_FAIL_SECONDS:.0f} s; run NTP on every host")
    if worst > CLOCK_WARN_SECONDS:
        return WARN, f"{detail}: over {CLOCK_WARN_SECONDS:.0f} s; stale-agent times will be off by as much"
    return OK, detail


def _answers(call: Callable) -> Exception | None:
    """None when `call()` works, else why not."""
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - unreachable, whatever the reason
        return exc
    return None


def _failed(exc: Exception) -> Callable[[], tuple[str, str]]:
    def check() -> tuple[str, str]:
        raise exc

    return check


def _needs(component: str) -> Callable[[], tuple[str, str]]:
    def check() -> tuple[str, str]:
        raise Failed(f"not checked: {component} is not reachable")

    return check


def run_all() -> list[Check]:
    database_down = _answers(connection.ensure_connection)  # asked once: an unreachable one can take seconds
    database_up = database_down is None
    redis_up = _answers(get_redis().ping) is None
    results = [_run("configuration", configuration), _run("database", _failed(database_down) if database_down else database)]
    if connection.vendor == "sqlite":
        results.append(_run("database integrity", integrity if database_up else _needs("the database")))
    results += [
        _run("migrations", migrations if database_up else _needs("the database")),
        _run("redis", redis),
    ]
    if not redis_up:
        return [*results, *(_run(name, _needs("Redis")) for name in ("worker", "beat", "channel layer", "clock skew"))]
    worker = _run("worker", workers)
    clock = (lambda: clock_skew(measured_skews())) if database_up else _needs("the database")
    return [
        *results,
        worker,
        _run("beat", lambda: beat(worker.status == OK)),
        _run("channel layer", channel_layer),
        _run("clock skew", clock),
    ]
