"""Server faults under ingest, produced for real: Redis paused and then restarted empty, the database
stopped (PostgreSQL) or locked (SQLite), the web server killed. Whatever a client was told is
stored is stored, once; a dependency that is down is a 503 with Retry-After, never a 500 or a
request held forever; the server, Celery and the live feed recover by themselves."""

from __future__ import annotations

import json
import logging
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import psycopg
import pytest
import websockets.sync.client as websocket
from django.db import connection
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.common import ignore_errors
from telemetry_client import TelemetryClient, TelemetryConfig

from operations.embedded_redis import EmbeddedRedis, free_port
from runs.models import Run, RunEvent
from tests.conftest import make_key
from tests.runs.factories import run_payload
from tests.runs.test_single_writes import together
from tests.services import PROMETHEUS_ACCEPT, ROOT, ThrowawayPostgres, asgi_server, celery_processes, postgres_bin_dir

pytestmark = pytest.mark.django_db(transaction=True)

OUTAGE_SECONDS = 10


def wait_for(condition, seconds: float = 30, every: float = 0.2) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(every)


def run_item(event_id: str, agent: str = "alpha") -> dict:
    """An ingest item for a finished run; its run_id is its event_id."""
    now = datetime.now(UTC).isoformat()
    return {
        "kind": "run",
        "event_id": event_id,
        "run_id": event_id,
        "agent_name": agent,
        "job_type": "faults",
        "start_time": now,
        "end_time": now,
        "status": "success",
        "items_discovered": 7,
        "input_summary": f"input of {event_id}",
    }


def stored_as_sent(run: Run, item: dict) -> bool:
    return (
        run.run_id == item["run_id"]
        and run.agent_name == item["agent_name"]
        and run.job_type == item["job_type"]
        and run.start_time == datetime.fromisoformat(item["start_time"])
        and run.status == item["status"]
        and run.items_discovered == item["items_discovered"]
        and run.input_summary == item["input_summary"]
    )


def health(base: str) -> tuple[int, dict]:
    """/health's status and body. The timeout only bounds the test: /health answers in its own."""
    response = httpx.get(f"{base}/health", timeout=30)
    return response.status_code, response.json()


def healthy_with_worker(base: str) -> bool:
    status, body = health(base)
    return status == 200 and body["worker_and_beat"]["status"] == "ok"


def assert_unavailable(response: httpx.Response, dependency: str) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    assert response.json() == {"error": {"code": "unavailable", "message": f"{dependency} is unavailable; retry later"}}


# --- 1. Redis paused, then restarted without its data ------------------------------------------


class Ingesting:
    """Client threads posting batches of runs (known event_ids) to /api/v1/ingest until stopped,
    each at most `batches` times; what each batch got back, and the phases it was sent and answered in."""

    def __init__(self, base: str, key: str, threads: int = 3, size: int = 10, batches: int = 400):
        self.base, self.key, self.size, self.batches = base, key, size, batches
        self.phase = "before"
        self.sent: list[tuple[str, str, list[str], int | None]] = []  # (phases, event_ids, status or None: no answer)
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._send, args=(number,)) for number in range(threads)]
        for thread in self.threads:
            thread.start()

    def _send(self, number: int) -> None:
        headers = {"Authorization": f"Api-Key {self.key}"}
        with httpx.Client(base_url=self.base, headers=headers, timeout=30) as http:
            for batch in range(self.batches):
                if self.stopping.is_set():
                    return
                phase, ids = self.phase, [f"redis-{number}-{batch}-{i}" for i in range(self.size)]
                try:
                    status = http.post("/api/v1/ingest", json={"items": [run_item(i) for i in ids]}).status_code
                except httpx.TransportError:
                    status = None
                self.sent.append((phase, self.phase, ids, status))
                time.sleep(0.1)

    def acknowledged(self, sent_in: str | None = None, answered_in: str | None = None) -> set[str]:
        return {
            i
            for sent, answered, ids, status in self.sent
            if status == 200 and sent_in in (None, sent) and answered_in in (None, answered)
            for i in ids
        }

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in self.threads)


def probe_reaches(feed, base: str, key: str) -> bool:
    """Ingest a run of agent alpha-probe; whether `feed` (watching that agent) then gets its event."""
    event_id = f"probe-{uuid.uuid4().hex[:8]}"
    response = httpx.post(
        f"{base}/api/v1/ingest", json={"items": [run_item(event_id, "alpha-probe")]}, headers={"Authorization": f"Api-Key {key}"}
    )
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            message = json.loads(feed.recv(timeout=1))
        except TimeoutError:
            continue
        if message["type"] == "events" and any(e["data"]["event_id"] == event_id for e in message["events"]):
            return True
    return False


def test_redis_paused_then_restarted_empty_loses_no_acknowledged_run_and_everything_recovers_by_itself(server_env, tmp_path):
    key = make_key("alpha", agents=["alpha", "alpha-*"])[1]
    redis = EmbeddedRedis(tmp_path / "redis").start()
    env = {
        **server_env,
        "REDIS_URL": redis.url,
        "WORKER_TICK_SECONDS": "1",
        "API_RATE_LIMIT": "100000/min",  # the throttle counts in Redis too
        "METRICS_ALLOWED_IPS": "127.0.0.1",
    }
    with ExitStack() as stack:
        redises = [redis]
        stack.callback(lambda: [r.stop() for r in redises])
        base = stack.enter_context(asgi_server(env))
        stack.enter_context(celery_processes(env))
        wait_for(lambda: healthy_with_worker(base), 60)
        feed_url = base.replace("http", "ws") + "/ws/live/?agents=alpha-probe"
        feed = stack.enter_context(websocket.connect(feed_url, additional_headers={"Authorization": f"Api-Key {key}"}))
        assert json.loads(feed.recv(10))["type"] == "ready"
        assert probe_reaches(feed, base, key)
        ingest = Ingesting(base, key)
        stack.callback(ingest.stop)
        wait_for(lambda: ingest.acknowledged())

        ingest.phase = "paused"
        paused_at = time.monotonic()
        redis.process.send_signal(signal.SIGSTOP)
        try:
            status, body = health(base)
            assert status == 503, body
            assert (body["redis"]["status"], body["database"]["status"]) == ("down", "ok")
            time.sleep(max(0.0, paused_at + OUTAGE_SECONDS - time.monotonic()))
        finally:
            redis.process.send_signal(signal.SIGCONT)

        ingest.phase = "down"
        redis.process.kill()
        redis.process.wait()
        status, body = health(base)
        assert status == 503, body
        heartbeat = httpx.post(
            f"{base}/api/v1/agents/alpha/heartbeat/start",
            json={"stale_after_seconds": 60},
            headers={"Authorization": f"Api-Key {key}"},
            timeout=30,
        )
        assert_unavailable(heartbeat, "Redis")
        # A plain Django view: the middleware's 503 (the text reads Redis; the JSON only the database).
        scrape = httpx.get(f"{base}/metrics", headers={"Accept": PROMETHEUS_ACCEPT}, timeout=30)
        assert (scrape.status_code, scrape.text) == (503, "Redis is unavailable; retry later.")
        assert int(scrape.headers["Retry-After"]) > 0
        time.sleep(2)  # the ingest threads meet a Redis that refuses connections

        ingest.phase = "back"
        redises.append(EmbeddedRedis(tmp_path / "redis-empty", port=redis.port).start())
        # The tick is in Redis: in the empty one, "ok" means the worker ran beat's tick again.
        wait_for(lambda: healthy_with_worker(base), 60)
        wait_for(lambda: ingest.acknowledged("back"))
        ingest.stop()

        assert probe_reaches(feed, base, key)  # the same websocket, through the whole outage
        features = httpx.get(f"{base}/api/v1/reports/features", headers={"Authorization": f"Api-Key {key}"}, timeout=30)
        websockets = next(row for row in features.json()["rows"] if row["feature"] == "websockets")
        assert websockets["status"] == "available", websockets  # the channel layer's round trip, in the server

    stored = set(Run.objects.exclude(agent_name="alpha-probe").values_list("event_id", flat=True))
    sent = {i for _, _, ids, _ in ingest.sent for i in ids}
    answered = Counter(status for _, _, _, status in ingest.sent)
    print(
        "batches by answer:",
        dict(answered),
        "acknowledged while Redis was away:",
        len(ingest.acknowledged("paused")),
        len(ingest.acknowledged("down", "down")),
    )
    assert ingest.acknowledged() <= stored  # every 2xx is in the database
    assert stored <= sent
    assert set(answered) <= {200, 429, 503, None}  # never a 500 (429: core.overload shedding load)
    # Keys and the rate limit need no Redis: the database answers for keys, the limit lets requests through.
    assert ingest.acknowledged("paused") and ingest.acknowledged("down", "down")


def test_a_worker_that_loses_redis_holding_a_task_closes_its_broker_connection_without_dying(tmp_path, caplog):
    """What a Celery worker does when Redis goes away while it holds an unacknowledged task (acks
    late) and waits for the next: Celery 5.7 collects, then closes, the broker connection
    (Consumer.on_connection_error_after_connected). Only connection errors may come out of that:
    anything else kills the worker (telemetry_site.celery works around kombu here)."""
    redis = EmbeddedRedis(tmp_path / "redis").start()
    try:
        broker = Connection(redis.url)
        tasks, control = broker.default_channel, broker.channel()
        queue = Queue("faults", Exchange("faults"), "faults")
        Producer(tasks).publish({"task": 1}, exchange=queue.exchange, routing_key="faults", declare=[queue])
        held = []
        Consumer(tasks, [queue], callbacks=[lambda body, message: held.append(message)]).consume()
        # The worker's remote-control queue: a fanout queue deleted with its channel.
        pidbox = Queue("faults.pidbox", Exchange("faults.pidbox", type="fanout"), auto_delete=True)
        Consumer(control, [pidbox], callbacks=[lambda body, message: None]).consume()
        for _ in range(10):
            if held:
                break
            with suppress(socket.timeout):
                broker.drain_events(timeout=1)
        assert held  # received, not acknowledged
        with suppress(socket.timeout):
            broker.drain_events(timeout=0.2)  # waiting for the next task
        redis.process.kill()
        redis.process.wait()
        # As Celery's teardown: anything from collect is ignored, then the close may raise only
        # connection or channel errors (ignore_errors passes anything else on, killing the worker).
        with suppress(Exception):
            broker.collect(socket_timeout=5)
        ignore_errors(broker, broker.close)
        # The close met the closed connection (kombu's AttributeError, without the workaround).
        assert "the broker connection is closed; unacknowledged tasks are left to Redis" in caplog.text
    finally:
        redis.stop()


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


# --- 3. The web server killed mid-ingest ---------------------------------------------------------


def test_a_web_server_killed_mid_ingest_leaves_no_half_written_run_and_the_sdk_then_delivers_the_rest(server_env, tmp_path):
    key = make_key("alpha")[1]
    runs = 1000
    offline = TelemetryClient(TelemetryConfig(api_url=None, spool_dir=tmp_path / "spool"))
    for index in range(runs):
        with offline.track_run("alpha", "killed", run_id=f"kill-{index:04d}") as run:
            run.log_event("step", {"n": index})
            run.set_metrics(items_discovered=index, output_summary=f"output {index}")
    offline.close()

    def whole(run: Run) -> bool:
        """As the SDK sent it: started, or ended with every field of its end."""
        index = int(run.run_id.removeprefix("kill-"))
        started = (run.agent_name, run.job_type, run.trigger_type) == ("alpha", "killed", "cli")
        if run.status == "running":
            return started and (run.end_time, run.items_discovered, run.output_summary) == (None, 0, "")
        ended = (run.status, run.items_discovered, run.output_summary) == ("success", index, f"output {index}")
        return started and ended and run.end_time is not None

    port, started = free_port(), []
    config = TelemetryConfig(spool_dir=tmp_path / "spool", flush_interval=0.05)
    with asgi_server(server_env, port=port, started=started) as base:
        client = TelemetryClient(config, api_url=base, api_key=key)  # sends what the offline client spooled
        wait_for(lambda: Run.objects.exists(), every=0.01)
        started[0].kill()
        started[0].wait()
    after_kill = list(Run.objects.all())
    assert 0 < len(after_kill) < runs  # killed mid-ingest
    assert [run.run_id for run in after_kill if not whole(run)] == []

    with asgi_server(server_env, port=port):
        assert client.flush(timeout=90)
    client.close()
    assert Counter(Run.objects.values_list("run_id", flat=True)) == {f"kill-{index:04d}": 1 for index in range(runs)}
    assert all(whole(run) and run.status == "success" for run in Run.objects.all())
    assert Counter(RunEvent.objects.values_list("run__run_id", flat=True)) == {f"kill-{index:04d}": 1 for index in range(runs)}


def post_batch(http: httpx.Client, items: list[dict]) -> tuple[str, float, float]:
    """POST a batch of runs: its outcome, when it was sent and when the outcome came. The outcome
    is the status ("200", "503"...) of a whole answer, "refused" for no answer at all, "truncated"
    for one cut short, "hung" for none in time."""
    sent = []
    http.event_hooks["request"] = [lambda request: sent.append(time.monotonic())]
    try:
        with http.stream("POST", "/api/v1/ingest", json={"items": items}) as response:
            try:
                body = json.loads(response.read())
            except (httpx.HTTPError, ValueError):
                return "truncated", sent[0], time.monotonic()
    except httpx.TimeoutException:
        return "hung", sent[0] if sent else 0.0, time.monotonic()
    except httpx.TransportError:
        return "refused", sent[0] if sent else 0.0, time.monotonic()
    if response.status_code == 200 and body["total"] != len(items):
        return "truncated", sent[0], time.monotonic()
    return str(response.status_code), sent[0], time.monotonic()


def test_sigterm_mid_ingest_answers_the_requests_in_flight_whole_or_refuses_them(server_env):
    key = make_key("alpha")[1]
    started, outcomes = [], []  # outcomes: (items, outcome, sent_at, answered_at)
    answered = threading.Event()  # a batch was just answered: its thread sends the next one

    def send(number: int) -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Api-Key {key}"}, timeout=30) as http:
            for batch in range(100):
                items = [run_item(f"term-{number}-{batch}-{i}") for i in range(1000)]
                outcome, sent_at, answered_at = post_batch(http, items)
                outcomes.append((items, outcome, sent_at, answered_at))
                if outcome != "200":
                    return
                answered.set()

    with asgi_server(server_env, started=started) as base:
        senders = [threading.Thread(target=send, args=(number,)) for number in range(3)]
        for sender in senders:
            sender.start()
        wait_for(lambda: sum(outcome == "200" for _, outcome, _, _ in outcomes) >= 3, every=0.01)
        answered.clear()
        answered.wait(timeout=30)  # the other threads' batches are in the server (a thousand runs take a while)
        term_at = time.monotonic()
        started[0].send_signal(signal.SIGTERM)
        for sender in senders:
            sender.join(timeout=60)
        assert started[0].wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once shut down

    print("outcomes:", Counter(outcome for _, outcome, _, _ in outcomes))
    assert {outcome for _, outcome, _, _ in outcomes} <= {"200", "429", "refused"}  # never truncated, never a 5xx
    # A request in flight when SIGTERM came got its whole answer.
    assert any(outcome == "200" and sent_at < term_at < answered_at for _, outcome, sent_at, answered_at in outcomes)
    stored = Run.objects.in_bulk(field_name="event_id")
    for items, outcome, _, _ in outcomes:
        if outcome == "200":
            assert all(item["event_id"] in stored and stored_as_sent(stored[item["event_id"]], item) for item in items)
