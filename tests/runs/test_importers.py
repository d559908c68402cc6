"""`import_ndjson` and `import_local_telemetry` on known files: valid, duplicate and invalid records,
exact counts, and a second import that stores nothing twice."""

from __future__ import annotations

import json
import sqlite3
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from telemetry_client import TelemetryClient

from runs import importers
from runs.models import Run, RunEvent
from tests.runs.factories import run_payload

START = "2025-12-10T12:05:30.123456+00:00"
EVENT_ID = "9b2e4c1a-6f0d-4e8b-9a51-3c7d2f8e1b60"
RUN_ID = "20251210T120530Z-hugo-translator-a1b2c3d4"


def local_run(**fields) -> dict:
    """A run line as local-telemetry's NDJSONWriter writes it (schema v6; unset fields are null)."""
    return {
        "run_id": RUN_ID, "agent_name": "hugo-translator", "job_type": "translate", "trigger_type": "cli",
        "start_time": START, "event_id": EVENT_ID, "schema_version": 6, "agent_owner": None, "end_time": None,
        "status": "running", "items_discovered": 0, "items_succeeded": 0, "items_failed": 0, "items_skipped": 0,
        "duration_ms": 0, "error_summary": None, "metrics_json": None, "context_json": None, "product": "slides",
        "website": "aspose.com", "git_repo": "local-telemetry", "git_branch": "main", "git_commit_hash": None,
        "host": "BUILD-01", "api_posted": 0, "api_posted_at": None, "api_retry_count": 0, "parent_run_id": None,
        "created_at": "2025-12-10T12:05:30.124001+00:00", "updated_at": "2025-12-10T12:05:30.124001+00:00",
        "record_type": "run", **fields,
    }  # fmt: skip


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def import_files(*paths: Path) -> list[str]:
    out = StringIO()
    call_command("import_ndjson", *map(str, paths), stdout=out)
    return out.getvalue().splitlines()


def test_local_telemetry_ndjson_replays_runs_their_ends_and_events(db, tmp_path):
    ended = local_run(
        end_time="2025-12-10T12:07:02.456789+00:00", status="success", items_discovered=10, items_succeeded=9,
        items_failed=1, duration_ms=92333, metrics_json='{"pages": 42}', created_at=None, updated_at=None,
    )  # fmt: skip
    old_run = local_run(run_id="old-run", status="failure", error_summary="boom", end_time=START, schema_version=3)
    del old_run["event_id"]  # before schema v6, runs had no event_id
    path = write_lines(
        tmp_path / "events_20251210.ndjson",
        [
            local_run(),
            {"run_id": RUN_ID, "event_type": "checkpoint", "timestamp": "2025-12-10T12:06:01.002345+00:00",
             "payload_json": '{"step": 1}', "id": None, "record_type": "event"},
            ended,
            "",
            old_run,
            local_run(),  # the start again: a duplicate, and the run stays ended
            "{not json",
            {"run_id": "never-started", "event_type": "x", "timestamp": START, "payload_json": None, "record_type": "event"},
            local_run(event_id="bad-status", run_id="r-bad", status="exploded"),
        ],
    )  # fmt: skip
    report = import_files(path)
    assert report[0] == "3 imported, 1 updated, 1 duplicates, 3 invalid"
    assert report[1].startswith(f"  invalid {path}:7: not JSON")
    assert report[2] == f"  invalid {path}:8: no run has run_id 'never-started' (import its run first)"
    assert report[3].startswith(f"  invalid {path}:9: Invalid item: see fields.") and "status" in report[3]

    run = Run.objects.get(event_id=EVENT_ID)
    assert (run.status, run.items_succeeded, run.duration_ms, run.metrics_json) == ("success", 9, 92333, {"pages": 42})
    assert (run.product, run.website, run.host) == ("slides", "aspose.com", "BUILD-01")
    assert run.created_at.isoformat() == "2025-12-10T12:05:30.124001+00:00"
    assert list(run.events.values_list("event_type", "payload")) == [("checkpoint", {"step": 1})]
    old = Run.objects.get(run_id="old-run")
    assert (old.status, old.error_summary, old.event_id) == ("failed", "boom", importers.derived_id("run", "old-run"))

    again = import_files(path)
    assert again[0] == "0 imported, 0 updated, 5 duplicates, 3 invalid"
    assert Run.objects.count() == 2 and RunEvent.objects.count() == 1


def test_the_sdk_spool_replays_idempotently(db, tmp_path):
    client = TelemetryClient(api_url="", spool_dir=tmp_path / "spool")  # no server: everything stays in the spool
    with client.track_run("alpha", "translate") as run:
        run.log_event("step", {"n": 1})
        run.log_event("step", {"n": 2})
        run.set_metrics(items_discovered=2, items_succeeded=2)
        run.associate_commit("abcdef1234", "llm")
    client.record_llm_usage("alpha", "claude-sonnet-4-5", input_tokens=100, output_tokens=20)
    client.close()
    segments = sorted((tmp_path / "spool").glob("slot-*/*.ndjson"))
    lines = [line for segment in segments for line in segment.read_text().splitlines()]
    assert [json.loads(line)["kind"] for line in lines] == ["run", "event", "event", "commit", "end", "usage"]
    path = write_lines(tmp_path / "spool.ndjson", [*lines, lines[1], '{"kind": "telepathy"}', "[1, 2]"])

    report = import_files(path, tmp_path / "missing.ndjson")
    assert report[0] == "4 imported, 2 updated, 1 duplicates, 3 invalid"
    assert report[1].startswith(f"  invalid {path}:8: Unknown kind 'telepathy'")
    assert report[2] == f"  invalid {path}:9: not a JSON object"
    assert report[3].startswith(f"  invalid {tmp_path / 'missing.ndjson'}: cannot read (No such file")
    stored = Run.objects.get()
    assert (stored.status, stored.items_succeeded, stored.git_commit_hash) == ("success", 2, "abcdef1234")
    assert stored.events.count() == 2 and stored.llm_usage.count() == 0  # usage was recorded outside the run

    again = import_files(path)
    assert again[0] == "0 imported, 0 updated, 7 duplicates, 2 invalid"


def test_lines_shaped_as_the_runs_api_bodies_are_imported(db, tmp_path, agent):
    posted = run_payload("alpha", status="success", end_time=START, items_succeeded=3)
    returned = agent.post("/api/v1/runs", run_payload("alpha", run_id="returned"), format="json")
    assert returned.status_code == 201
    as_returned = agent.get(f"/api/v1/runs/{returned.json()['event_id']}").json()  # with id, commit_url, updated_at...
    Run.objects.all().delete()
    event = {"run_event_id": posted["event_id"], "event_id": "e-1", "event_type": "step", "payload": {"n": 1}}
    path = write_lines(tmp_path / "api.ndjson", [posted, as_returned, event, {"agent_name": "alpha"}])

    report = import_files(path)
    assert report[0] == "3 imported, 0 updated, 0 duplicates, 1 invalid"
    assert "nor a runs API body" in report[1]
    stored = Run.objects.get(event_id=posted["event_id"])
    assert (stored.status, stored.items_succeeded, stored.events.get().payload) == ("success", 3, {"n": 1})
    assert Run.objects.get(event_id=as_returned["event_id"]).run_id == "returned"
    assert import_files(path)[0] == "0 imported, 0 updated, 3 duplicates, 1 invalid"


V6_SCHEMA = """
CREATE TABLE agent_runs (
 id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, run_id TEXT NOT NULL,
 schema_version INTEGER DEFAULT 6, created_at TEXT NOT NULL DEFAULT (datetime('now')),
 updated_at TEXT DEFAULT (datetime('now')), start_time TEXT NOT NULL, end_time TEXT,
 agent_name TEXT NOT NULL, agent_owner TEXT, job_type TEXT NOT NULL,
 status TEXT NOT NULL DEFAULT 'running', product TEXT, items_discovered INTEGER DEFAULT 0,
 items_succeeded INTEGER DEFAULT 0, items_failed INTEGER DEFAULT 0, duration_ms INTEGER DEFAULT 0,
 error_summary TEXT, git_commit_hash TEXT, git_commit_source TEXT, metrics_json TEXT,
 api_posted INTEGER DEFAULT 0, insight_id TEXT);
CREATE TABLE run_events (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL REFERENCES agent_runs(run_id),
 event_type TEXT NOT NULL, timestamp TEXT NOT NULL, payload_json TEXT);
CREATE TABLE commits (commit_hash TEXT PRIMARY KEY, run_id TEXT REFERENCES agent_runs(run_id), agent_name TEXT,
 repo TEXT, branch TEXT, commit_date TEXT, author TEXT, message TEXT, files_changed INTEGER, insertions INTEGER,
 deletions INTEGER, created_at TEXT DEFAULT (datetime('now')));
CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT DEFAULT (datetime('now')), description TEXT);
"""


def local_telemetry_database(path: Path) -> Path:
    db = sqlite3.connect(path)
    db.executescript(V6_SCHEMA)
    runs = [
        ("e-1", "r-1", "2025-12-01T10:00:00+00:00", None, "a", "job", "running", None, None),
        ("e-2", "r-2", "2025-12-01T11:00:00+00:00", "2025-12-01T11:00:05+00:00", "a", "job", "failure", "boom", "abcdef1"),
        ("e-3", "r-3", "yesterday-ish", None, "a", "job", "running", None, None),
    ]
    db.executemany(
        "INSERT INTO agent_runs (event_id, run_id, start_time, end_time, agent_name, job_type, status, error_summary,"
        " git_commit_hash, metrics_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '{\"k\": 1}')",
        runs,
    )
    db.executemany(
        "INSERT INTO run_events (run_id, event_type, timestamp, payload_json) VALUES (?, ?, ?, ?)",
        [("r-1", "start", "2025-12-01T10:00:01+00:00", '{"input": "data.csv"}'),
         ("r-1", "checkpoint", "2025-12-01T10:00:02+00:00", None),
         ("r-404", "orphan", "2025-12-01T10:00:03+00:00", None)],
    )  # fmt: skip
    db.execute(
        "INSERT INTO commits (commit_hash, run_id, agent_name, repo, commit_date, message)"
        " VALUES ('abcdef1', 'r-2', 'a', 'site', '2025-12-01 11:00:06', 'Translate docs')"
    )
    db.execute("INSERT INTO schema_migrations (version, description) VALUES (6, 'event_id')")
    db.commit()
    db.close()
    return path


def test_a_local_telemetry_database_is_imported_once(db, tmp_path):
    path = local_telemetry_database(tmp_path / "telemetry.sqlite")
    out = StringIO()
    call_command("import_local_telemetry", str(path), stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "agent_runs: 3 rows, run_events: 3 rows, commits: 1 rows"
    assert lines[1] == "5 imported, 0 updated, 0 duplicates, 2 invalid"
    assert lines[2].startswith("  invalid agent_runs row 3: Invalid item: see fields.") and "start_time" in lines[2]
    assert lines[3] == "  invalid run_events row 3: no run has run_id 'r-404' (import its run first)"

    failed = Run.objects.get(event_id="e-2")
    assert (failed.status, failed.error_summary, failed.duration_ms, failed.metrics_json) == ("failed", "boom", 5000, {"k": 1})
    assert failed.git_commit_hash == "abcdef1"
    commit = failed.events.get()
    assert (commit.event_type, commit.payload["message"], commit.timestamp.isoformat()) == (
        "git.commit", "Translate docs", "2025-12-01T11:00:06+00:00"
    )  # fmt: skip
    assert list(Run.objects.get(event_id="e-1").events.values_list("event_type", "payload")) == [
        ("start", {"input": "data.csv"}), ("checkpoint", None)
    ]  # fmt: skip

    again = StringIO()
    call_command("import_local_telemetry", str(path), stdout=again)
    assert again.getvalue().splitlines()[1] == "0 imported, 0 updated, 5 duplicates, 2 invalid"
    assert Run.objects.count() == 2 and RunEvent.objects.count() == 3


def test_a_file_that_is_not_a_local_telemetry_database_is_refused(db, tmp_path):
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(CommandError, match="not a local-telemetry database"):
        call_command("import_local_telemetry", str(other))
    (tmp_path / "text.sqlite").write_text("hello")
    with pytest.raises(CommandError, match="not a readable SQLite database"):
        call_command("import_local_telemetry", str(tmp_path / "text.sqlite"))
    with pytest.raises(CommandError, match="no such file"):
        call_command("import_local_telemetry", str(tmp_path / "missing.sqlite"))
