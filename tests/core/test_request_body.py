"""The real server reads no request body larger than HTTP_MAX_BODY_BYTES, for any URL, before any
view runs (Django's handler would spool all of it to a temporary file first): 413 with the API's
error body, at once from Content-Length (the body is never sent), or once a chunked body has sent
that much. Nothing is stored, and a body within the limit is served as before."""

from __future__ import annotations

import json
import socket
import threading
from contextlib import suppress
from urllib.parse import urlsplit

import httpx
import pytest

from runs.models import Run
from tests.conftest import make_key
from tests.runs.factories import run_payload
from tests.services import asgi_server

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = 64 * 1024


@pytest.fixture
def server(server_env) -> str:
    with asgi_server({**server_env, "HTTP_MAX_BODY_BYTES": str(LIMIT)}) as base:
        yield base


@pytest.fixture
def key() -> str:
    return make_key("alpha")[1]


def answer(connection: socket.socket) -> tuple[int, dict]:
    """The status and JSON body of the response on `connection` (read up to its Content-Length:
    the server may reset the connection after it, with the request's body unread)."""
    received = b""
    while b"\r\n\r\n" not in received or len(received.partition(b"\r\n\r\n")[2]) < length(received):
        chunk = connection.recv(65536)
        assert chunk, f"the server closed the connection after {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def length(received: bytes) -> int:
    head = received.partition(b"\r\n\r\n")[0].decode("latin-1").lower()
    return next(int(line.split(":", 1)[1]) for line in head.split("\r\n") if line.startswith("content-length:"))


def connect(server: str) -> socket.socket:
    address = urlsplit(server)
    connection = socket.create_connection((address.hostname, address.port))
    connection.settimeout(30)  # a server waiting for the body would fail the test here
    return connection


def assert_too_large(status: int, body: dict) -> None:
    assert status == 413
    assert body["error"]["code"] == "too_large" and "HTTP_MAX_BODY_BYTES" in body["error"]["message"]


@pytest.mark.parametrize("path", ["/api/v1/ingest", "/admin/login/"])
def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(server, key, path):
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Api-Key {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {10 * 1024**3}\r\n\r\n"
    )
    with connect(server) as connection:
        connection.sendall(head.encode())
        assert_too_large(*answer(connection))
    assert not Run.objects.exists()


def test_a_chunked_body_is_refused_once_it_passes_the_limit(server, key):
    head = (
        f"POST /api/v1/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Api-Key {key}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"%x\r\n%s\r\n" % (LIMIT // 4, b" " * (LIMIT // 4))

    def send(connection: socket.socket) -> None:
        try:
            connection.sendall(head.encode())
            for _ in range(128):  # 8 MiB in all: within the batch endpoint's own limit, far beyond this one
                connection.sendall(chunk)
            connection.sendall(b"0\r\n\r\n")
        except OSError:  # the server answered and closed the connection
            pass

    with connect(server) as connection:
        sender = threading.Thread(target=send, args=(connection,))
        sender.start()
        try:
            assert_too_large(*answer(connection))
        finally:
            with suppress(OSError):  # (reset already)
                connection.shutdown(socket.SHUT_RDWR)
            sender.join()
    assert not Run.objects.exists()


def test_a_body_within_the_limit_is_served(server, key):
    batch = [{"kind": "run", **run_payload("alpha", metrics_json={"notes": ["x" * 1000] * 40})}]  # 40 KB
    response = httpx.post(f"{server}/api/v1/ingest", json=batch, headers={"Authorization": f"Api-Key {key}"})
    assert response.status_code == 200 and response.json()["inserted"] == 1, response.text
    assert Run.objects.count() == 1
