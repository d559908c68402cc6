"""The database stopped (PostgreSQL) or locked (SQLite) mid-ingest: only 503s with Retry-After while
it is away, then the SDK, and clients sending again, store each run once."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import httpx
import psycopg
import pytest
from django.db import connection
from telemetry_client import TelemetryClient, TelemetryConfig

from runs.models import Run
from tests.conftest import make_key
from tests.faults.ingest import OUTAGE_SECONDS, wait_for
from tests.runs.factories import run_payload
from tests.runs.test_single_writes import together
from tests.services import ROOT, ThrowawayPostgres, asgi_server, postgres_bin_dir

pytestmark = pytest.mark.django_db(transaction=True)

# --- 2. The database stopped (PostgreSQL) or locked (SQLite) ---------------------------------------


@dataclass
class FragileDatabase:
    """A database a server can use and this test can take away for a while."""

    env: dict[str, str]  # the server's environment
    key: str  # an agent key for alpha there
    taken_away: Callable[[], AbstractContextManager]  # the database is away inside it
    run_ids: Callable[[], list[str]]  # the run_ids stored


@pytest.fixture
def fragile_database(server_env, tmp_path) -> FragileDatabase:
    """On SQLite, the test database, locked by another connection (the server's busy timeout is
    short, so its writes fail instead of waiting out the lock). On PostgreSQL, a cluster of its
    own, stopped and started again."""
    if connection.vendor == "sqlite":
        path = connection.settings_dict["NAME"]

        @contextmanager
        def locked():
            lock = sqlite3.connect(path, timeout=30, isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")
            try:
                yield
            finally:
                lock.execute("COMMIT")
                lock.close()

        yield FragileDatabase(
            {**server_env, "SQLITE_BUSY_TIMEOUT": "1"},
            make_key("alpha")[1],
            locked,
            lambda: list(Run.objects.values_list("run_id", flat=True)),
        )
        return
    postgres = ThrowawayPostgres(postgres_bin_dir()).start()
    try:
        env = {**server_env, "DATABASE_URL": postgres.url}
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        created = subprocess.run(
            [sys.executable, "manage.py", "create_agent_key", "alpha"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )

        @contextmanager
        def stopped():
            postgres.halt()
            try:
                yield
            finally:
                postgres.resume()

        def run_ids() -> list[str]:
            with psycopg.connect(postgres.url.replace("postgres://", "postgresql://")) as db:
                return [run_id for (run_id,) in db.execute(f"SELECT run_id FROM {Run._meta.db_table}")]  # noqa: S608

        yield FragileDatabase(env, created.stdout.strip().splitlines()[-1], stopped, run_ids)
    finally:
        postgres.stop()


@dataclass
class Answer:
    sent_at: float
    answered_at: float
    status: int
    retry_after: str | None
    body: bytes


def observed(client: TelemetryClient) -> list[Answer]:
    """Every answer the SDK's sender gets from now on (httpx's event hooks on its HTTP client)."""
    answers: list[Answer] = []
    sent_at: dict[int, float] = {}

    def on_request(request: httpx.Request) -> None:
        sent_at[id(request)] = time.monotonic()

    def on_response(response: httpx.Response) -> None:
        response.read()
        retry_after = response.headers.get("Retry-After")
        answers.append(
            Answer(sent_at.pop(id(response.request)), time.monotonic(), response.status_code, retry_after, response.content)
        )

    client.sender.http.event_hooks = {"request": [on_request], "response": [on_response]}
    return answers


def test_a_database_outage_mid_ingest_is_only_503s_and_the_sdk_then_delivers_each_run_once(fragile_database, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="telemetry_client")
    db = fragile_database
    runs = 300
    with asgi_server(db.env) as base:
        config = TelemetryConfig(api_url=base, api_key=db.key, spool_dir=tmp_path / "spool", flush_interval=0.05, batch_size=20)
        client = TelemetryClient(config)
        answers = observed(client)

        def record():
            for index in range(runs):
                with client.track_run("alpha", "outage", run_id=f"db-{index:04d}"):
                    pass
                time.sleep(0.05)

        recorder = threading.Thread(target=record)
        recorder.start()
        wait_for(lambda: any(answer.status == 200 for answer in answers))
        with db.taken_away():
            away_from = time.monotonic()
            time.sleep(OUTAGE_SECONDS)
            away_until = time.monotonic()
        recorder.join(timeout=60)
        assert client.flush(timeout=90)
        client.close()

    assert Counter(db.run_ids()) == {f"db-{index:04d}": 1 for index in range(runs)}
    # Sent and answered while the database was away: a request sent just before may have committed
    # before the lock was taken and still be answered inside the window.
    meanwhile = [answer.status for answer in answers if away_from < answer.sent_at and answer.answered_at < away_until]
    refused = [answer for answer in answers if answer.status not in (200, 429)]  # 429: core.overload shedding load
    print("answers while the database was away:", Counter(meanwhile), "503s in all:", len(refused))
    # On PostgreSQL a request waits up to the pool's timeout (10 s) for a connection, so its 503
    # may come after the database is back.
    assert set(meanwhile) <= {503, 429}
    if connection.vendor == "sqlite":  # a locked database refuses at once
        assert 503 in meanwhile
    assert refused
    for answer in refused:
        assert answer.status == 503 and int(answer.retry_after) > 0
        assert json.loads(answer.body) == {
            "error": {"code": "unavailable", "message": "the database is unavailable; retry later"}
        }
    assert f"delivery failed (503 Service Unavailable); retrying in {refused[0].retry_after}.0 s" in caplog.text


def test_single_runs_sent_together_while_the_database_is_away_are_each_503_then_stored_once(fragile_database):
    """Single POSTs gathered into one group (core.group_commit): the outage fails every one of them,
    none is stored half-way, and each sent again is stored once."""
    db = fragile_database
    runs = [run_payload(run_id=f"single-{index}") for index in range(6)]
    with asgi_server(db.env) as base:
        assert [
            answer.status_code for answer in together(base, db.key, [("POST", "/api/v1/runs", run_payload(run_id="before"))])
        ] == [201]
        with db.taken_away():
            answers = together(base, db.key, [("POST", "/api/v1/runs", run) for run in runs])
        assert [(answer.status_code, answer.json()["error"]["code"]) for answer in answers] == [(503, "unavailable")] * len(runs)
        assert db.run_ids() == ["before"]
        # Sent again as a client does, each until it is answered (PostgreSQL's pool may still hand
        # out a connection that died with the server: a 503, and it is dropped).
        unanswered = list(runs)

        def sent_again() -> bool:
            answers = together(base, db.key, [("POST", "/api/v1/runs", run) for run in unanswered])
            assert {answer.status_code for answer in answers} <= {201, 503}
            unanswered[:] = [run for run, answer in zip(unanswered, answers, strict=True) if answer.status_code == 503]
            return not unanswered

        wait_for(sent_again, seconds=60, every=0.5)
    assert Counter(db.run_ids()) == {"before": 1, **{run["run_id"]: 1 for run in runs}}
