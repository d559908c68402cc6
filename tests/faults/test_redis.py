"""Redis paused, then restarted empty, under ingest: no acknowledged run lost, 503s for what needs
Redis, and the server, Celery and the live feed recover by themselves; a worker survives the loss."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack, suppress

import httpx
import pytest
import websockets.sync.client as websocket
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.common import ignore_errors

from operations.embedded_redis import EmbeddedRedis
from runs.models import Run
from tests.conftest import make_key
from tests.faults.ingest import OUTAGE_SECONDS, run_item, wait_for
from tests.services import PROMETHEUS_ACCEPT, asgi_server, celery_processes

pytestmark = pytest.mark.django_db(transaction=True)


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
