"""The server on its own /metrics (core.selfmetrics, core.observing), and its JSON logs, against
the real server: uvicorn with several workers, a real Celery worker, Redis."""

from __future__ import annotations

import json
import socket
import time
from contextlib import ExitStack

import httpx
import pytest
import websockets.sync.client as ws
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed, InvalidStatus

from telemetry_site.celery import app as celery_app
from tests.conftest import make_key
from tests.services import PROMETHEUS_ACCEPT, asgi_server, celery_processes


def scrape(base: str, raw_key: str) -> dict[tuple, float]:
    """The samples of GET /metrics: (sample name, labels as sorted pairs) -> value."""
    response = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {raw_key}", "Accept": PROMETHEUS_ACCEPT})
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def scrape_until(base: str, raw_key: str, done, seconds: float = 10) -> dict[tuple, float]:
    """Scrape until `done(samples)`: each process flushes its tallies every FLUSH_SECONDS."""
    deadline = time.monotonic() + seconds
    while True:
        samples = scrape(base, raw_key)
        if done(samples):
            return samples
        assert time.monotonic() < deadline, {key: value for key, value in samples.items() if "server" in key[0]}
        time.sleep(0.2)


def requests(samples, group: str, status: int) -> float:
    return samples.get(("telemetry_server_requests_total", (("group", group), ("status", str(status)))), 0)


def buckets(samples, group: str) -> dict[str, float]:
    return {
        dict(labels)["le"]: value
        for (name, labels), value in samples.items()
        if name == "telemetry_server_request_duration_seconds_bucket" and dict(labels)["group"] == group
    }


def closes(samples) -> dict[str, float]:
    return {
        dict(labels)["code"]: value
        for (name, labels), value in samples.items()
        if name == "telemetry_server_websocket_closes_total"
    }


@pytest.fixture
def scraper(transactional_db) -> str:
    return make_key("prometheus", scopes=["metrics:read"])[1]


def test_requests_waits_and_websockets_of_every_web_process_are_counted(server_env, scraper):
    _, raw = make_key("alpha", scopes=["coordination:write", "coordination:read", "runs:read", "streams:read"])
    unread = make_key("beta", scopes=["runs:read"])[1]
    headers = {"Authorization": f"Api-Key {raw}"}
    with asgi_server(server_env, workers=2) as base:
        for _ in range(20):  # each on a new connection: both workers serve some
            assert httpx.post(f"{base}/api/v1/agents/alpha/heartbeat", json={}, headers=headers).status_code == 200
        assert httpx.get(f"{base}/api/v1/runs/no-such-run", headers=headers).status_code == 404
        assert httpx.get(f"{base}/api/v1/runs").status_code == 401  # Django's own handler
        assert httpx.get(f"{base}/no/such/page").status_code == 404
        wait = httpx.post(f"{base}/api/v1/signals/receive", json={"agent_id": "alpha", "timeout": 0.3}, headers=headers)
        assert wait.status_code == 200
        url = base.replace("http", "ws") + "/ws/live/"
        with pytest.raises(InvalidStatus):
            ws.connect(url, additional_headers={**headers, "Origin": "http://evil.example"})
        with ws.connect(url, additional_headers={"Authorization": f"Api-Key {unread}"}) as client:
            assert json.loads(client.recv(5))["error"]["code"] == "missing_scope"
            with pytest.raises(ConnectionClosed):
                client.recv(5)
        with ws.connect(url, additional_headers=headers) as client:
            assert json.loads(client.recv(5))["type"] == "ready"
            scrape_until(base, scraper, lambda s: s[("telemetry_server_websocket_clients", ())] == 1)
        after = scrape_until(
            base,
            scraper,
            lambda s: (
                requests(s, "heartbeat", 200) == 20
                and s[("telemetry_server_websocket_clients", ())] == 0
                and s[("telemetry_server_waits_total", ())] == 1
                and s[("telemetry_server_websocket_connections_total", (("outcome", "accepted"),))] == 2
            ),
        )
    outcomes = {o: after[("telemetry_server_websocket_connections_total", (("outcome", o),))] for o in ("accepted", "refused")}
    assert outcomes == {"accepted": 2, "refused": 1}
    assert closes(after) == {"4403": 1}  # (the other two closed by their clients)
    assert requests(after, "run-detail", 404) == 1
    assert requests(after, "run-list", 401) == 1
    assert requests(after, "other", 404) == 1
    assert requests(after, "signal-receive", 200) == 1
    assert after[("telemetry_server_waits_held", ())] == 0
    heartbeats = buckets(after, "heartbeat")
    assert heartbeats["+Inf"] == 20 == after[("telemetry_server_request_duration_seconds_count", (("group", "heartbeat"),))]
    assert list(heartbeats.values()) == sorted(heartbeats.values())  # cumulative
    assert heartbeats["30.0"] == 20
    assert after[("telemetry_server_request_duration_seconds_sum", (("group", "heartbeat"),))] > 0
    assert not buckets(after, "signal-receive")  # a held wait's time is the wait's, not the server's


def stalled_request(base: str, raw_key: str) -> socket.socket:
    """A request whose body never comes: it stays in progress (as in tests/client/test_overload.py)."""
    host, port = base.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)))
    connection.sendall(
        b"POST /api/v1/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Authorization: Api-Key {raw_key}\r\nContent-Length: 20\r\n\r\n".encode()
    )
    return connection


def test_requests_the_load_shedder_refuses_are_counted(server_env, scraper):
    _, raw = make_key("alpha")
    with asgi_server({**server_env, "WEB_MAX_IN_FLIGHT": "1"}) as base:
        with ExitStack() as stack:
            stack.enter_context(stalled_request(base, raw))
            deadline = time.monotonic() + 10
            while (refused := httpx.get(f"{base}/api/v1/runs", headers={"Authorization": f"Api-Key {raw}"})).status_code != 429:
                assert time.monotonic() < deadline
            assert refused.headers["x-request-id"]
        samples = scrape_until(base, scraper, lambda s: requests(s, "shed", 429) >= 1)
    assert samples[("telemetry_server_shed_total", (("reason", "in_flight"),))] == requests(samples, "shed", 429)
    assert samples[("telemetry_server_shed_total", (("reason", "loop_lag"),))] == 0


def test_the_celery_queue_and_failed_tasks_are_counted(server_env, scraper):
    with asgi_server(server_env) as base:
        for _ in range(3):  # with no worker yet: they wait in the queue
            celery_app.send_task("core.tasks.record_worker_heartbeat", args=["unexpected"])
        queued = scrape(base, scraper)
        assert queued[("telemetry_server_celery_queue_length", (("queue", "celery"),))] == 3
        with celery_processes(server_env, beat=False):
            failures = ("telemetry_server_celery_task_failures_total", (("task", "core.tasks.record_worker_heartbeat"),))
            done = scrape_until(base, scraper, lambda s: s.get(failures) == 3, seconds=30)
    assert done[("telemetry_server_celery_queue_length", (("queue", "celery"),))] == 0


def test_json_logs_carry_the_request_id_the_response_shows(server_env, tmp_path):
    _, raw = make_key("alpha")
    log = tmp_path / "web.log"
    headers = {"Authorization": f"Api-Key {raw}"}
    env = {**server_env, "LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG"}
    with asgi_server(env, log=log) as base:
        waited = httpx.post(f"{base}/api/v1/signals/receive", json={"agent_id": "alpha", "timeout": 0.2}, headers=headers)
        given = httpx.get(f"{base}/health", headers={"X-Request-ID": "lb-7f3a.1"})
        malformed = httpx.get(f"{base}/health", headers={"X-Request-ID": "<script> x"})
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]  # every line is JSON
    assert all({"timestamp", "level", "logger", "message"} <= set(line) for line in lines)
    by_id: dict[str, list[dict]] = {}
    for line in lines:
        by_id.setdefault(line.get("request_id"), []).append(line)
    wait_id = waited.headers["x-request-id"]
    assert len(wait_id) == 32
    assert {"core.wakeups", "uvicorn.access"} <= {line["logger"] for line in by_id[wait_id]}  # the view's and the server's
    assert given.headers["x-request-id"] == "lb-7f3a.1" and [line["logger"] for line in by_id["lb-7f3a.1"]] == ["uvicorn.access"]
    assert malformed.headers["x-request-id"] not in ("", "<script> x") and malformed.headers["x-request-id"] in by_id
