"""Writes to runs, shared by the API, the admin and commands."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from operator import attrgetter
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from rest_framework import exceptions

from coordination import selectors as coordination
from core import events
from core.batch import Batch, MayActAs, Row, row_of
from core.fastpaths.bulk_insert import update_rows
from core.group_commit import GroupCommit
from core.models import AgentKey
from core.permissions import agent_forbidden
from runs.changes import runs_changed
from runs.models import Run, RunEvent, RunStatus
from runs.schemas import BatchEventIn, CommitIn, CommitItem, EventIn, RunEnd, RunIn, RunPatch

LIFECYCLE_FIELDS = ("event_id", "run_id", "agent_name", "job_type", "status", "start_time", "end_time", "duration_ms",
                    "items_discovered", "items_succeeded", "items_failed", "error_summary")  # fmt: skip


def lifecycle_event(row: Row) -> events.Event:
    """run.ended once a run's status is final, run.started while it runs. A run recorded after it
    finished is announced once, as ended."""
    data = {name: row.get(name) for name in LIFECYCLE_FIELDS}
    return events.Event("run.started" if data["status"] == RunStatus.RUNNING else "run.ended", data)


def build_run(data: RunIn) -> Run:
    run = Run(**data.model_fields_for_db())
    run.fill_duration()
    return run


def ingest_runs(items: list, may_act_as: MayActAs) -> Batch:
    batch = Batch(items, RunIn)
    batch.reject_forbidden_agents(may_act_as)
    return store_runs(batch)


def store_runs(batch: Batch) -> Batch:
    """Store the valid runs of `batch`, announcing each one created (run.started or run.ended)."""
    rows: dict[str, Row] = {}
    batch.store(
        Run,
        lambda item: rows.setdefault(item.event_id, row_of(build_run(item))),
        on_stored=lambda stored: runs_changed.send(Run, moments=[row["created_at"] for row in stored]),
    )
    created = (rows[r["event_id"]] for r in batch.results if r and r["status"] == "created")
    events.publish(*(lifecycle_event(row) for row in created))
    return batch


def create_runs(runs: list[RunIn]) -> list[str]:
    """Store runs checked already; for each, "created", or "duplicate" when its event_id was stored
    before (or earlier in the list)."""
    return [result["status"] for result in store_runs(Batch.of_valid(runs)).results]


# One run a request (POST /api/v1/runs, the MCP tool): `await run_creates.write(run)` is
# create_runs' answer for it, stored in one transaction with the others arriving meanwhile.
run_creates = GroupCommit(create_runs)


class RunChanges:
    """The fields that writes changed on stored runs (their instances), written together by
    write(): one UPDATE per set of fields and the runs' days announced once, where a save each
    made two statements a run (bench/ingest.py, PATCH; docs/performance.md)."""

    def __init__(self) -> None:
        self.changed: dict[int, tuple[Run, set[str]]] = {}  # pk -> the run, the names of its changed fields

    def note(self, run: Run, names: Iterable[str]) -> None:
        self.changed.setdefault(run.pk, (run, set()))[1].update(names)

    def write(self) -> None:
        """Inside the caller's transaction; updated_at set to now."""
        now, by_fields = timezone.now(), defaultdict(list)
        for run, names in self.changed.values():
            run.updated_at = now
            by_fields[tuple(sorted({*names, "updated_at"}))].append(run)
        for names, runs in by_fields.items():
            update_rows(Run, [{"id": run.pk, **{name: getattr(run, name) for name in names}} for run in runs], names)
        if self.changed:
            runs_changed.send(Run, moments=[run.created_at for run, _ in self.changed.values()])
        self.changed.clear()


def update_run(run: Run, patch: RunPatch, changes: RunChanges | None = None) -> list[str]:
    """Apply a PATCH; returns the names of the fields it set, in the model's order. The row is
    written with `changes` (a group's, when the group is), or now."""
    fields = patch.changes()
    was_running = run.status == RunStatus.RUNNING
    run.apply(fields)
    _note(run, [*fields, "duration_ms"], changes)
    if was_running and run.status != RunStatus.RUNNING:
        events.publish(lifecycle_event(row_of(run)))
    return [f.name for f in Run._meta.fields if f.name in fields]


def _note(run: Run, names: list[str], changes: RunChanges | None) -> None:
    """`run`'s fields `names` changed: written with `changes`, or now when there are none."""
    written_now = changes is None
    changes = RunChanges() if changes is None else changes
    changes.note(run, names)
    if written_now:
        changes.write()


@dataclass(frozen=True)
class RunWrite:
    """One request's write to a stored run (a PATCH, a commit, events), by the key that sends it
    (None: staff): `apply(run, changes)` makes it (noting what it changes in `changes`, the
    group's) and returns the request's answer."""

    event_id: str
    key: AgentKey | None
    apply: Callable[[Run, RunChanges], Any]


def write_runs(writes: list[RunWrite]) -> list[Any]:
    """Writes to stored runs, in one transaction, in order; for each, its answer, or why not (the
    run unknown, or not the key's to change)."""
    runs = {run.event_id: run for run in Run.objects.filter(event_id__in={write.event_id for write in writes}).order_by()}
    answers: list[Any] = []
    changes = RunChanges()
    with transaction.atomic():
        for write in writes:
            run = runs.get(write.event_id)
            if run is None:
                answers.append(exceptions.NotFound("No Run matches the given query."))
            elif write.key is not None and not write.key.may_act_as(run.agent_name):
                answers.append(agent_forbidden(run.agent_name))
            else:
                answers.append(write.apply(run, changes))
        changes.write()
    return answers


# One write to a run a request: `await run_writes.write(RunWrite(...))` is write_runs' answer for
# it, made in one transaction with the others arriving meanwhile.
run_writes = GroupCommit(write_runs)


def associate_commit(run: Run, commit: CommitIn, changes: RunChanges | None = None) -> bool:
    """Link `run` to `commit`; whether that changed anything (False: it was linked so already).
    The row is written with `changes`, or now."""
    values = {
        "git_commit_hash": commit.commit_hash.lower(),
        "git_commit_source": commit.commit_source,
        "git_commit_author": commit.commit_author,
        "git_commit_timestamp": commit.commit_timestamp,
    }
    if all(getattr(run, name) == value for name, value in values.items()):
        return False
    for name, value in values.items():
        setattr(run, name, value)
    _note(run, list(values), changes)
    return True


def _runs_for(batch: Batch, may_act_as: MayActAs, run_of=attrgetter("event_id"), runs=Run.objects) -> dict[str, Run]:
    """The runs the valid items of `batch` name (by `run_of(item)`, a run's event_id), by that
    name; items naming an unknown run, or one the key may not act for, are rejected."""
    found = runs.in_bulk({run_of(item) for item in batch.valid.values()}, field_name="event_id")
    for index, item in list(batch.valid.items()):
        run = found.get(run_of(item))
        if run is None:
            batch.reject(index, "run_not_found", f"No run has event_id '{run_of(item)}'.")
        elif not may_act_as(run.agent_name):
            batch.reject(index, "agent_forbidden", f"This key may not act as agent '{run.agent_name}'.")
    return found


def end_runs(items: list, may_act_as: MayActAs) -> Batch:
    """How runs ended (the SDK's end_run): any non-identity field; the duration derived if not given."""
    batch = Batch(items, RunEnd)
    runs, changes = _runs_for(batch, may_act_as), RunChanges()
    with transaction.atomic():
        for index, item in batch.valid.items():
            run = runs[item.event_id]
            ending = item.model_dump(include=item.model_fields_set - {"event_id"})
            fields = [*ending, "duration_ms"]
            before = [getattr(run, name) for name in fields]
            was_running = run.status == RunStatus.RUNNING
            run.apply(ending)
            changed = [getattr(run, name) for name in fields] != before
            if changed:
                changes.note(run, fields)
            if was_running and run.status != RunStatus.RUNNING:
                events.publish(lifecycle_event(row_of(run)))
            batch.updated(index, changed)
        changes.write()
    return batch


def associate_commits(items: list, may_act_as: MayActAs) -> Batch:
    batch = Batch(items, CommitItem)
    runs, changes = _runs_for(batch, may_act_as), RunChanges()
    with transaction.atomic():
        for index, item in batch.valid.items():
            batch.updated(index, associate_commit(runs[item.event_id], item, changes))
        changes.write()
    return batch


def end_running(runs, status: RunStatus, reason: str) -> int:
    """End the runs among `runs` still running with `status` and `reason` (the admin's cancel,
    the abandoned-run sweep); returns how many. Safe against a concurrent end: a run that ended
    meanwhile keeps its own ending."""
    now = timezone.now()
    ids = list(runs.filter(status=RunStatus.RUNNING).values_list("pk", flat=True))
    ending = Run.objects.filter(pk__in=ids, status=RunStatus.RUNNING)
    with transaction.atomic():
        count = ending.update(status=status, end_time=now, error_summary=reason[:500], updated_at=now)
        mine = list(Run.objects.filter(pk__in=ids, status=status, updated_at=now))
        runs_changed.send(Run, moments=[run.created_at for run in mine])
    events.publish(*(lifecycle_event(row_of(run)) for run in mine))
    return count


def time_out_abandoned_runs(grace_seconds: float) -> int:
    """Runs still `running` whose agent went stale after they started and has stayed stale for
    `grace_seconds` are marked `timeout`; returns how many."""
    stale_long_enough = coordination.stale_at_or_before(timezone.now() - timedelta(seconds=grace_seconds)).filter(
        agent_id=OuterRef("agent_name"), stale_since__gte=OuterRef("created_at")
    )
    abandoned = Run.objects.filter(Exists(stale_long_enough), status=RunStatus.RUNNING)
    return end_running(abandoned, RunStatus.TIMEOUT, "Timed out: the agent stopped sending heartbeats.")


def _event(run: Run, item: EventIn) -> Row:
    return {
        "run_id": run.pk,
        "event_id": item.event_id,
        "event_type": item.event_type,
        "timestamp": item.timestamp,
        "payload": item.payload,
    }


def record_events(run: Run, items: list) -> Batch:
    """Events of one run (the key was checked against the run's agent by the caller)."""
    batch = Batch(items, EventIn)
    batch.store(RunEvent, lambda item: _event(run, item))
    return batch


def ingest_events(items: list, may_act_as: MayActAs) -> Batch:
    """Events of any runs, each naming its run by `run_event_id`."""
    batch = Batch(items, BatchEventIn)
    runs = _runs_for(batch, may_act_as, attrgetter("run_event_id"), Run.objects.only("id", "event_id", "agent_name"))
    batch.store(RunEvent, lambda item: _event(runs[item.run_event_id], item))
    return batch


def delete_all() -> dict[str, int]:
    """Delete every run and its events (without announcing their days: whoever asks for this
    forgets their figures too); how many of each."""
    with transaction.atomic():
        return {"events": RunEvent.objects.all().delete()[0], "runs": Run.objects.all().delete()[0]}
