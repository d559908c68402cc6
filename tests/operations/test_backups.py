"""`manage.py backup` and `restore`: a round trip into an empty database finds every row of every table."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from approvals.models import ApprovalRequest
from coordination.models import Agent
from core import ingest
from runs.models import Run
from tests.conftest import database_url, make_key
from tests.runs.factories import run_payload
from tests.services import ROOT


def manage(env: dict, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, input=input
    )


def fill_database() -> None:
    """Rows in the tables every app writes: runs with events, usage, a metric and a span; keys,
    agents, an approval, a reviewer."""
    run = run_payload()
    now = datetime.now(UTC).isoformat()
    items = [
        {"kind": "run", **run},
        {"kind": "event", "event_id": str(uuid.uuid4()), "run_event_id": run["event_id"], "event_type": "step"},
        {"kind": "end", "event_id": run["event_id"], "status": "success", "items_succeeded": 3},
        {"kind": "usage", "event_id": str(uuid.uuid4()), "agent_name": "alpha", "model": "claude-sonnet-4-5",
         "input_tokens": 10, "output_tokens": 5, "timestamp": now},
        {"kind": "metric", "event_id": str(uuid.uuid4()), "agent_name": "alpha", "name": "agent_executions_total",
         "metric_type": "counter", "value": 1, "labels": {"agent_type": "translator"}, "timestamp": now},
    ]  # fmt: skip
    results = ingest.ingest(items, lambda agent: True).results
    assert [r["status"] for r in results] == ["created", "created", "updated", "created", "created"], results
    make_key("alpha")
    Agent.objects.create(agent_id="alpha", display_name="Alpha")
    ApprovalRequest.objects.create(agent_id="alpha", approval_type="deploy", context={"env": "prod"}, timeout_seconds=60)
    get_user_model().objects.create_user("reviewer", password="pw", is_staff=True)


def table_rows(cursor, tables: list[str]) -> dict[str, list[tuple]]:
    rows = {}
    for table in tables:
        cursor.execute(f'SELECT * FROM "{table}" ORDER BY 1')  # noqa: S608 - names from introspection
        rows[table] = cursor.fetchall()
    return rows


def test_a_backup_restores_into_an_empty_database_with_every_row(server_env, tmp_path):
    fill_database()
    tables = connection.introspection.table_names()
    before = rows_of(database_url(), tables)
    for table in (
        "runs_run",
        "runs_runevent",
        "quality_llmusage",
        "metrics_metricpoint",
        "core_agentkey",
        "approvals_approvalrequest",
    ):
        assert before[table], f"{table} is empty: the test would prove nothing"

    backup = manage(server_env, "backup", "--output", str(tmp_path / "telemetry.backup"))
    assert backup.returncode == 0, backup.stderr
    assert f"Backed up to {tmp_path / 'telemetry.backup'}" in backup.stdout

    if connection.vendor == "sqlite":
        restored_url = f"sqlite:///{tmp_path / 'restored.sqlite3'}"
    else:
        name = f"restored_{uuid.uuid4().hex[:8]}"
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
        restored_url = database_url().rsplit("/", 1)[0] + f"/{name}"
    restore = manage({**server_env, "DATABASE_URL": restored_url}, "restore", str(tmp_path / "telemetry.backup"))
    assert restore.returncode == 0, restore.stderr
    assert "Restored" in restore.stdout

    after = rows_of(restored_url, tables)
    assert after == before


def rows_of(url: str, tables: list[str]) -> dict[str, list[tuple]]:
    """Every row of `tables`, read with the driver alone (Django's converters would differ between sides)."""
    if url.startswith("sqlite:///"):
        import sqlite3

        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return table_rows(db.cursor(), tables)
        finally:
            db.close()
    with psycopg.connect(url.replace("postgres://", "postgresql://")) as db, db.cursor() as cursor:
        return table_rows(cursor, tables)


def test_restore_asks_before_replacing_data_and_refuses_a_foreign_file(server_env, tmp_path):
    backup = manage(server_env, "backup", "--output", str(tmp_path / "empty.backup"))
    assert backup.returncode == 0, backup.stderr
    fill_database()
    refused = manage(server_env, "restore", str(tmp_path / "empty.backup"), input="no\n")
    assert refused.returncode == 1 and "Nothing restored." in refused.stderr
    assert Run.objects.count() == 1

    not_a_backup = tmp_path / "notes.txt"
    not_a_backup.write_text("hello")
    foreign = manage(server_env, "restore", "--yes", str(not_a_backup))
    assert foreign.returncode == 1 and "neither a SQLite database nor a pg_dump" in foreign.stderr
    missing = manage(server_env, "restore", "--yes", str(tmp_path / "nope"))
    assert missing.returncode == 1 and "no such file" in missing.stderr
    assert Run.objects.count() == 1


@pytest.mark.parametrize("name", ["pg_dump", "pg_restore"])
def test_the_postgres_tools_are_found_or_named(name, monkeypatch, tmp_path):
    from operations import backups

    monkeypatch.setenv("PG_BIN_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    found = backups.pg_binary(name) if list(Path("/usr/lib/postgresql").glob(f"*/bin/{name}")) else None
    if found:
        assert found.startswith("/usr/lib/postgresql/") and found.endswith(name)
    else:
        with pytest.raises(backups.BackupError, match="install the PostgreSQL client"):
            backups.pg_binary(name)


def test_a_sqlite_backup_completes_while_the_server_writes(server_env, tmp_path):
    if connection.vendor != "sqlite":
        pytest.skip("pg_dump reads one snapshot whatever the writes")
    import sqlite3
    import threading

    fill_database()
    path = connection.settings_dict["NAME"]
    stop = threading.Event()

    def write():
        db = sqlite3.connect(path, timeout=20)
        db.execute("CREATE TABLE IF NOT EXISTS scratch (n INTEGER)")
        while not stop.is_set():
            with db:
                db.execute("INSERT INTO scratch VALUES (1)")
        db.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        done = manage(server_env, "backup", "--output", str(tmp_path / "busy.backup"))
    finally:
        stop.set()
        writer.join()
        with sqlite3.connect(path, timeout=20) as db:  # not a model's table: the test database's flush would keep it
            db.execute("DROP TABLE scratch")
    assert done.returncode == 0, done.stderr
    copy = sqlite3.connect(tmp_path / "busy.backup")
    assert copy.execute("PRAGMA quick_check").fetchone() == ("ok",)
    assert copy.execute("SELECT count(*) FROM runs_run").fetchone() == (1,)
    assert (tmp_path / "busy.backup").stat().st_mode & 0o777 == 0o600
