"""Single runs written at the same moment are stored as one group (core.group_commit), each
answered its own outcome: created, duplicate (once stored, or earlier in the same group), or the
error of the one item the database refused, which fails alone."""

import asyncio
from collections import Counter
from contextlib import contextmanager

import pytest
from django.db import DatabaseError, OperationalError, connection, connections
from rest_framework.exceptions import NotFound, PermissionDenied

from core.models import AgentKey
from runs import services
from runs.models import Run, RunEvent
from runs.schemas import CommitIn, RunIn, RunPatch
from runs.services import RunWrite
from tests.runs.factories import run_payload
from tests.runs.test_single_writes import announced, locked_database

pytestmark = pytest.mark.django_db(transaction=True)


def written_together(runs: list[dict]) -> list:
    """Each run written by its own task, all at once on one event loop: the first starts a group,
    which the others join before it is stored. Each task's outcome, or the exception it raised."""

    async def write_all():
        writes = [services.run_creates.write(RunIn.model_validate(run)) for run in runs]
        return await asyncio.gather(*writes, return_exceptions=True)

    return asyncio.run(write_all())


@contextmanager
def poisoned_runs():
    """The database refuses any run whose job_type is "poison" (a trigger raising an error)."""
    table = Run._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                f"CREATE TRIGGER poison BEFORE INSERT ON {table} WHEN NEW.job_type = 'poison' "
                "BEGIN SELECT RAISE(ABORT, 'poisoned run'); END"
            )
        else:
            cursor.execute(
                "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN IF NEW.job_type = 'poison' THEN "
                "RAISE EXCEPTION 'poisoned run'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(f"CREATE TRIGGER poison BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION poison()")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER poison{'' if connection.vendor == 'sqlite' else f' ON {table}'}")
            if connection.vendor != "sqlite":
                cursor.execute("DROP FUNCTION poison()")


def test_runs_written_together_are_one_group_each_answered_its_own_outcome():
    stored_before = run_payload()
    assert written_together([stored_before]) == ["created"]
    twin = run_payload()
    runs = [run_payload(), twin, run_payload(status="success"), twin, stored_before, twin]

    assert written_together(runs) == ["created", "created", "created", "duplicate", "duplicate", "duplicate"]

    assert services.run_creates.sizes[-1] == len(runs)  # one group, one transaction
    assert sorted(Run.objects.values_list("event_id", flat=True)) == sorted({run["event_id"] for run in [stored_before, *runs]})
    assert announced("run.started") == Counter({run["event_id"]: 1 for run in [stored_before, runs[0], twin]})
    assert announced("run.ended") == Counter({runs[2]["event_id"]: 1})


def test_an_item_the_database_refuses_fails_alone_and_its_neighbours_are_stored():
    runs = [run_payload(), run_payload(job_type="poison"), run_payload(), run_payload()]
    runs.append(runs[0])  # a duplicate within the group, answered duplicate once stored alone too
    with poisoned_runs():
        outcomes = written_together(runs)

    assert outcomes[:1] + outcomes[2:] == ["created", "created", "created", "duplicate"]
    assert isinstance(outcomes[1], DatabaseError) and "poisoned run" in str(outcomes[1])
    assert sorted(Run.objects.values_list("event_id", flat=True)) == sorted(run["event_id"] for run in runs[:1] + runs[2:4])
    assert announced("run.started") == Counter({run["event_id"]: 1 for run in runs[:1] + runs[2:4]})


def test_a_locked_database_fails_each_write_of_the_group_and_stores_none_of_it():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's lock; PostgreSQL stopped mid-ingest: tests/faults/test_database.py")
    runs = [run_payload() for _ in range(5)]
    options = connections.settings["default"]["OPTIONS"]  # the writer's connection is opened from these
    busy_timeout, options["timeout"] = options["timeout"], 0.2
    try:
        with locked_database():
            outcomes = written_together(runs)
    finally:
        options["timeout"] = busy_timeout

    assert [type(outcome) for outcome in outcomes] == [OperationalError] * len(runs)
    assert not Run.objects.exists() and announced("run.started") == Counter()
    assert written_together(runs) == ["created"] * len(runs)  # and each, retried, is stored once


def test_writes_to_runs_made_together_apply_in_order_each_answered_its_own_outcome():
    mine, other, theirs = (Run.objects.create(**run_payload(agent)) for agent in ("alpha", "alpha", "beta"))
    key = AgentKey(name="alpha", agents=["alpha"], scopes=["runs:write"])

    def patch(**fields):
        return lambda run, changes: services.update_run(run, RunPatch(**fields), changes)

    def commit(run, changes):
        return services.associate_commit(run, CommitIn(commit_hash="ABC1234", commit_source="llm"), changes)

    event = {"event_id": "e-1", "event_type": "step", "timestamp": "2026-01-01T00:00:00Z"}
    writes = [
        RunWrite(mine.event_id, key, patch(status="success")),
        RunWrite(mine.event_id, key, patch(items_succeeded=3)),
        RunWrite("no-such-run", key, patch(status="failed")),
        RunWrite(theirs.event_id, key, patch(status="failed")),
        RunWrite(other.event_id, None, patch(error_summary="x" * 10)),  # staff
        RunWrite(mine.event_id, key, commit),
        RunWrite(mine.event_id, key, commit),  # linked so already
        RunWrite(other.event_id, key, lambda run, _: services.record_events(run, [event, event, {"event_id": "e-2"}])),
    ]

    async def write_all():
        return await asyncio.gather(*(services.run_writes.write(write) for write in writes), return_exceptions=True)

    outcomes = asyncio.run(write_all())

    assert services.run_writes.sizes[-1] == len(writes)
    assert outcomes[:2] + outcomes[4:7] == [["status"], ["items_succeeded"], ["error_summary"], True, False]
    refusals = [(type(error), error.get_codes()) for error in outcomes[2:4]]
    assert refusals == [(NotFound, "not_found"), (PermissionDenied, "agent_forbidden")]
    assert [result["status"] for result in outcomes[7].results] == ["created", "duplicate", "rejected"]
    assert set(Run.objects.values_list("agent_name", "status", "items_succeeded", "error_summary", "git_commit_hash")) == {
        ("alpha", "success", 3, "", "abc1234"),
        ("alpha", "running", 0, "x" * 10, ""),
        ("beta", "running", 0, "", ""),
    }
    assert list(RunEvent.objects.values_list("run__event_id", "event_id")) == [(other.event_id, "e-1")]
    assert announced("run.ended") == Counter({mine.event_id: 1})


def test_patches_made_together_store_each_runs_own_values_json_and_nulls_included():
    runs = [
        Run.objects.create(**run_payload("alpha", metrics_json={"old": i}, end_time="2026-01-01T00:00:00Z")) for i in range(4)
    ]
    bodies = [
        {"metrics_json": {"n": 0}, "status": "success"},
        {"metrics_json": None, "status": "failed"},
        {"metrics_json": {"n": 2}, "end_time": None},  # another set of fields: another UPDATE
        {"context_json": {"nested": ["x", 1]}, "end_time": None},
    ]

    async def write_all():
        writes = [
            services.run_writes.write(
                RunWrite(run.event_id, None, lambda run, changes, body=body: services.update_run(run, RunPatch(**body), changes))
            )
            for run, body in zip(runs, bodies, strict=True)
        ]
        return await asyncio.gather(*writes)

    asyncio.run(write_all())
    assert services.run_writes.sizes[-1] == len(runs)
    stored = {
        row[0]: row[1:] for row in Run.objects.values_list("event_id", "metrics_json", "context_json", "status", "end_time")
    }
    assert [stored[run.event_id][:3] for run in runs] == [
        ({"n": 0}, None, "success"),
        (None, None, "failed"),
        ({"n": 2}, None, "running"),
        ({"old": 3}, {"nested": ["x", 1]}, "running"),
    ]
    assert [stored[run.event_id][3] is None for run in runs] == [False, False, True, True]
