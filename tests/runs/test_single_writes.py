"""Single writes sent at the same moment to the real server, whose agent API runs their views on a
few long-lived threads (WEB_SYNC_THREADS), its SQLite writers queued on one lock a process, and
publishes their events from the event loop once committed (core.fastpaths.agent_handler): each
request still gets its own outcome, each new run's event is on the bus once, and a locked database
answers each waiting request 503 with nothing stored."""

import json
import os
import sqlite3
import threading
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from django.db import connection

from core import streams
from core.redis import get_redis
from runs.models import Run
from tests.conftest import make_key
from tests.runs.factories import run_payload
from tests.services import asgi_server

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 4  # WEB_SYNC_THREADS of the server under test


def together(base: str, raw_key: str, requests: list[tuple[str, str, dict]]) -> list[httpx.Response]:
    """Each (method, path, body) sent from its own thread and connection, all released at once."""
    answers: list[httpx.Response | None] = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def send(index: int) -> None:
        method, path, body = requests[index]
        with httpx.Client(base_url=base, headers={"Authorization": f"Api-Key {raw_key}"}, timeout=30) as client:
            start.wait()
            answers[index] = client.request(method, path, json=body)

    threads = [threading.Thread(target=send, args=(index,)) for index in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def announced(event_type: str) -> Counter:
    """How many times each run (by event_id) was announced as `event_type`."""
    return Counter(json.loads(fields[b"data"])["event_id"] for _, fields in get_redis().xrange(streams.stream_key(event_type)))


def database_files_open(pid: int) -> int:
    """The file descriptors of process `pid` open on the SQLite database file itself."""
    database = Path(connection.settings_dict["NAME"]).resolve()
    return sum(1 for fd in Path(f"/proc/{pid}/fd").iterdir() if Path(os.readlink(fd)) == database)


def test_single_writes_at_the_same_moment_each_get_their_own_outcome_and_their_event_once(server_env):
    _, raw_key = make_key("alpha")
    new = [run_payload() for _ in range(24)]
    twin = run_payload()
    invalid = [run_payload(items_failed=-1) for _ in range(4)]
    forbidden = [run_payload("beta") for _ in range(4)]
    posts = [("POST", "/api/v1/runs", body) for body in [*new, *[twin] * 6, *invalid, *forbidden]]
    started = []
    with asgi_server({**server_env, "WEB_SYNC_THREADS": str(THREADS)}, started=started) as base:
        answers = together(base, raw_key, posts)
        outcomes = [(answer.status_code, answer.json().get("status") or answer.json()["error"]["code"]) for answer in answers]
        assert outcomes[: len(new)] == [(201, "created")] * len(new)
        assert sorted(outcomes[len(new) : len(new) + 6]) == [(200, "duplicate")] * 5 + [(201, "created")]
        assert outcomes[len(new) + 6 :] == [(400, "invalid")] * len(invalid) + [(403, "agent_forbidden")] * len(forbidden)
        assert sorted(Run.objects.values_list("event_id", flat=True)) == sorted(run["event_id"] for run in [*new, twin])
        assert announced("run.started") == Counter({run["event_id"]: 1 for run in [*new, twin]})

        patches = [("PATCH", f"/api/v1/runs/{run['event_id']}", {"status": "success", "items_succeeded": 3}) for run in new]
        answers = together(base, raw_key, [*patches, ("PATCH", "/api/v1/runs/no-such-run", {"status": "success"})])
        assert [answer.status_code for answer in answers] == [200] * len(new) + [404]
        patched = Run.objects.filter(event_id__in=[run["event_id"] for run in new])
        assert set(patched.values_list("status", "items_succeeded")) == {("success", 3)}
        assert announced("run.ended") == Counter({run["event_id"]: 1 for run in new})
        if connection.vendor == "sqlite":  # each of the server's threads keeps its connection, no more
            assert 1 <= database_files_open(started[0].pid) <= THREADS


@contextmanager
def locked_database():
    lock = sqlite3.connect(connection.settings_dict["NAME"], timeout=30, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        lock.execute("COMMIT")
        lock.close()


def test_writes_queued_on_a_locked_sqlite_database_are_each_answered_503_and_store_nothing(server_env):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's write lock (PostgreSQL's outage: tests/faults/test_database.py)")
    _, raw_key = make_key("alpha")
    runs = [run_payload(status="success") for _ in range(8)]
    posts = [("POST", "/api/v1/runs", run) for run in runs]
    with asgi_server({**server_env, "SQLITE_BUSY_TIMEOUT": "1", "WEB_SYNC_THREADS": str(THREADS)}) as base:
        with locked_database():
            answers = together(base, raw_key, posts)
        assert [(answer.status_code, answer.json()["error"]["code"]) for answer in answers] == [(503, "unavailable")] * len(runs)
        assert not Run.objects.exists()
        assert announced("run.ended") == Counter()
        assert [answer.status_code for answer in together(base, raw_key, posts)] == [201] * len(runs)
    assert announced("run.ended") == Counter({run["event_id"]: 1 for run in runs})
