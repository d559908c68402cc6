"""Beyond capacity the server answers 429 with Retry-After at once, and the SDK backs off and
keeps its records until there is room."""

import json
import socket
import time
from contextlib import ExitStack

import httpx

from runs.models import Run
from tests.client.conftest import stored_runs
from tests.services import asgi_server

BODY = json.dumps({"items": []}).encode()


def stalled_request(base: str, raw_key: str) -> socket.socket:
    """An ingest request whose headers arrived but whose body has not: it holds its place in the
    server's count of requests in progress until the body is sent."""
    host, port = base.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)))
    connection.sendall(
        b"POST /api/v1/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Authorization: Api-Key {raw_key}\r\nContent-Length: {len(BODY)}\r\n\r\n".encode()
    )
    return connection


def first_refusal(base: str, raw_key: str) -> httpx.Response:
    """The server counts a stalled request once it has read its headers: ask until it has."""
    deadline = time.monotonic() + 10
    while True:
        response = httpx.get(f"{base}/api/v1/runs", headers={"Authorization": f"Api-Key {raw_key}"})
        if response.status_code == 429 or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_a_full_server_refuses_with_429_at_once_and_the_sdk_delivers_once_there_is_room(server_env, make_client, agent_key):
    with asgi_server({**server_env, "WEB_MAX_IN_FLIGHT": "2"}) as base, ExitStack() as stack:
        held = [stack.enter_context(stalled_request(base, agent_key)) for _ in range(2)]
        refused = first_refusal(base, agent_key)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error"]["code"] == "overloaded"
        # Waits and /health are not work: they are never shed.
        assert httpx.get(f"{base}/health").status_code == 200
        wait = httpx.post(
            f"{base}/api/v1/signals/receive",
            json={"agent_id": "alpha", "signal_type": "go", "timeout": 0.1},
            headers={"Authorization": f"Api-Key {agent_key}"},
        )
        assert wait.status_code == 200

        client = make_client(base)
        for index in range(20):
            with client.track_run("alpha", "overload", run_id=f"run-{index:02d}"):
                pass
        assert client.flush(timeout=2) is False
        assert client.get_stats()["failed_requests"] > 0
        assert Run.objects.count() == 0

        for connection in held:
            connection.sendall(BODY)
            assert connection.recv(65536).startswith(b"HTTP/1.1 200")
        assert client.flush(timeout=30)
    assert sorted(stored_runs()) == [f"run-{index:02d}" for index in range(20)]
