"""History from files: NDJSON records (the SDK's spool, local-telemetry's `raw/events_YYYYMMDD.ndjson`,
runs and events as the runs API takes and returns them) and local-telemetry's SQLite database.
Records go through the same ingest as the API, so importing twice stores nothing twice: a record
stored before counts as a duplicate.

local-telemetry writes a run twice to NDJSON (a full record when it starts, another when it ends,
with the same event_id); the later one becomes an update. Its events carry no id and name their
run by `run_id`: their ids are derived from their content, so a replay finds them again.
"""

from __future__ import annotations

import heapq
import itertools
import json
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import ingest
from core.batch import error_text
from runs.models import Run
from runs.schemas import RUN_IDENTITY

CHUNK_ITEMS = 500  # items per ingest call (one transaction each)
INVALID_SHOWN = 100  # invalid records listed in the summary; the rest are counted
# local-telemetry's own bookkeeping, and what the runs API adds to a run it returns: not history.
BOOKKEEPING = {"record_type", "schema_version", "updated_at", "api_posted", "api_posted_at", "api_retry_count", "id",
               "commit_url", "repo_url", "deliveries"}  # fmt: skip
API_RUN = {"agent_name", "job_type", "start_time"}  # a line shaped as a run the runs API takes
DERIVED_IDS = uuid.UUID("5b0f3f5e-2c1d-4b7a-9a0e-6f1d2c3b4a59")  # namespace of ids made from local-telemetry's keys

Advance = Callable[[int], None]


class NotImportable(Exception):
    pass


def derived_id(*parts: Any) -> str:
    return str(uuid.uuid5(DERIVED_IDS, "\x1f".join(str(part) for part in parts)))


@dataclass
class ImportSummary:
    imported: int = 0
    updated: int = 0
    duplicates: int = 0
    invalid: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)  # the first INVALID_SHOWN: (-position, "where: why")

    def reject(self, position: int, where: str, why: str) -> None:
        """Records are rejected as they are read or when their chunk is stored: the position
        (the record's order in the input) keeps the listing in input order."""
        self.invalid += 1
        heapq.heappush(self.problems, (-position, f"{where}: {why}"))
        if len(self.problems) > INVALID_SHOWN:
            heapq.heappop(self.problems)  # the latest in the input

    def report(self) -> list[str]:
        lines = [f"{self.imported} imported, {self.updated} updated, {self.duplicates} duplicates, {self.invalid} invalid"]
        lines += [f"  invalid {problem}" for _, problem in sorted(self.problems, reverse=True)]
        if self.invalid > len(self.problems):
            lines.append(f"  ... and {self.invalid - len(self.problems)} more invalid")
        return lines


class Importer:
    """Collects records (each one or more ingest items, with where it came from) and ingests them
    in chunks, in order; each record counts once in the summary."""

    def __init__(self) -> None:
        self.summary = ImportSummary()
        self._positions = itertools.count()
        self._pending: list[tuple[int, str, list[dict]]] = []
        self._pending_items = 0
        self._run_event_ids: dict[str, str | None] = {}  # local-telemetry run_id -> our event_id

    def reject(self, where: str, why: str, position: int | None = None) -> None:
        self.summary.reject(next(self._positions) if position is None else position, where, why)

    # --- records ---------------------------------------------------------------------------
    def add_record(self, where: str, record: Any) -> None:
        """One NDJSON record of either format."""
        if not isinstance(record, dict):
            return self.reject(where, "not a JSON object")
        if "kind" in record:
            return self._add(where, [record])
        if record.get("record_type") == "run":
            return self.add_local_run(where, record)
        if record.get("record_type") == "event":
            return self.add_local_event(where, record)
        if record.keys() >= API_RUN:  # POST /api/v1/runs's body, or a run GET returns
            return self.add_local_run(where, record)
        if {"run_event_id", "event_type"} <= record.keys():  # an item of POST /api/v1/events/batch
            return self._add(where, [{"kind": "event", **record}])
        return self.reject(
            where,
            "neither an SDK record (kind), a local-telemetry one (record_type run or event), "
            "nor a runs API body (a run: agent_name, job_type, start_time; an event: run_event_id, event_type)",
        )

    def add_local_run(self, where: str, record: dict) -> None:
        run = {k: v for k, v in record.items() if v is not None and k not in BOOKKEEPING}
        if not run.get("event_id") and not isinstance(run.get("run_id"), str):
            return self.reject(where, "a run needs an event_id or a run_id")
        run["event_id"] = run.get("event_id") or derived_id("run", run.get("run_id"))  # before its schema v6
        if run.get("run_id"):
            self._run_event_ids[run["run_id"]] = run["event_id"]
        items = [{"kind": "run", **run}]
        if run.get("status", "running") != "running":  # its end: applied when the start was stored first
            end = {k: v for k, v in run.items() if k not in RUN_IDENTITY or k == "event_id"}
            if not end.get("duration_ms"):
                end.pop("duration_ms", None)  # 0: not measured; derived from the times instead
            items.append({"kind": "end", **end})
        self._add(where, items)

    def add_local_event(self, where: str, record: dict) -> None:
        run_event_id = self._run_event_id(record.get("run_id"))
        if run_event_id is None:
            return self.reject(where, f"no run has run_id {record.get('run_id')!r} (import its run first)")
        payload = record.get("payload_json")
        if isinstance(payload, str):
            with suppress(ValueError):  # else kept as the text it is
                payload = json.loads(payload)
        event = {"event_type": record.get("event_type"), "timestamp": record.get("timestamp"), "payload": payload}
        event_id = derived_id("event", record.get("run_id"), *event.values())
        self._add(where, [{"kind": "event", "event_id": event_id, "run_event_id": run_event_id, **event}])

    def add_local_commit(self, where: str, row: dict) -> None:
        """A row of local-telemetry's commits table: kept as a `git.commit` event of its run."""
        run_event_id = self._run_event_id(row.get("run_id"))
        if run_event_id is None:
            return self.reject(where, f"no run has run_id {row.get('run_id')!r}")
        event = {
            "kind": "event",
            "event_id": derived_id("commit", row.get("commit_hash"), row.get("run_id")),
            "run_event_id": run_event_id,
            "event_type": "git.commit",
            "payload": row,
        }
        if row.get("commit_date") or row.get("created_at"):
            event["timestamp"] = row.get("commit_date") or row.get("created_at")
        self._add(where, [event])

    def _run_event_id(self, run_id: Any) -> str | None:
        if not isinstance(run_id, str):
            return None
        if run_id not in self._run_event_ids:
            self._run_event_ids[run_id] = Run.objects.filter(run_id=run_id).values_list("event_id", flat=True).first()
        return self._run_event_ids[run_id]

    # --- ingest ----------------------------------------------------------------------------
    def _add(self, where: str, items: list[dict]) -> None:
        self._pending.append((next(self._positions), where, items))
        self._pending_items += len(items)
        if self._pending_items >= CHUNK_ITEMS:
            self.flush()

    def flush(self) -> None:
        records, self._pending, self._pending_items = self._pending, [], 0
        results = iter(ingest.ingest([dict(item) for *_, items in records for item in items], lambda agent: True).results)
        for position, where, items in records:
            self._count(position, where, [next(results) for _ in items])

    def _count(self, position: int, where: str, results: list[dict]) -> None:
        statuses = {result["status"] for result in results}
        if "rejected" in statuses:
            error = next(result["error"] for result in results if result["status"] == "rejected")
            self.reject(where, error_text(error), position)
        elif "created" in statuses:
            self.summary.imported += 1
        elif "updated" in statuses:
            self.summary.updated += 1
        else:
            self.summary.duplicates += 1


def import_ndjson(paths: Iterable[Path], advance: Advance = lambda n: None) -> ImportSummary:
    """Every line of every file, in order; `advance` gets the bytes read."""
    importer = Importer()
    for path in paths:
        try:
            with open(path, "rb") as file:
                for number, line in enumerate(file, start=1):
                    advance(len(line))
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except ValueError as exc:
                        importer.reject(f"{path}:{number}", f"not JSON ({exc})")
                        continue
                    importer.add_record(f"{path}:{number}", record)
        except OSError as exc:
            importer.reject(str(path), f"cannot read ({exc.strerror or exc})")
    importer.flush()
    return importer.summary


def local_telemetry_tables(path: Path) -> dict[str, int]:
    """The importable tables of a local-telemetry database and their row counts."""
    if not path.is_file():
        raise NotImportable(f"{path}: no such file")
    try:
        with _open_readonly(path) as db:
            present = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "agent_runs" not in present:
                raise NotImportable(f"{path} is not a local-telemetry database (it has no agent_runs table)")
            count = "SELECT count(*) FROM {}"
            return {table: db.execute(count.format(table)).fetchone()[0] for table in LOCAL_TABLES if table in present}
    except sqlite3.DatabaseError as exc:
        raise NotImportable(f"{path} is not a readable SQLite database ({exc})") from exc


LOCAL_TABLES = ("agent_runs", "run_events", "commits")  # in this order: runs before what refers to them


def import_local_telemetry(path: Path, advance: Advance = lambda n: None) -> ImportSummary:
    """Runs, then events and commits; `advance` gets the rows read."""
    tables = local_telemetry_tables(path)
    importer = Importer()
    add = {"agent_runs": importer.add_local_run, "run_events": importer.add_local_event, "commits": importer.add_local_commit}
    with _open_readonly(path) as db:
        for table in tables:
            for row in db.execute(f"SELECT rowid AS _rowid, * FROM {table} ORDER BY rowid"):  # noqa: S608 - our names
                record = dict(row)
                add[table](f"{table} row {record.pop('_rowid')}", record)
                advance(1)
    importer.flush()
    return importer.summary


@contextmanager
def _open_readonly(path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        yield db
    finally:
        db.close()
