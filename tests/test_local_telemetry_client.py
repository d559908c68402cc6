"""local-telemetry's agents, unchanged, against the production server (uvicorn, DEBUG off).

LocalTelemetryHttpClient is that project's HTTP client as its documentation describes it: pointed
at TELEMETRY_API_URL, it sends no Authorization header; posts a batch as a bare JSON array and
takes only 200 or 201, reading inserted, duplicates, errors and total (any other status, 207
included, makes it post the same batch three more times, then report the service unavailable);
takes 400 for a validation error; reads GET /metrics with .json() (total_runs, agents,
recent_24h) and /health's "status": "ok". The server lets it in with KEYLESS_WRITES_FROM.
"""

import httpx
import pytest

from tests.conftest import make_key
from tests.runs.factories import run_payload
from tests.services import PROMETHEUS_ACCEPT, asgi_server

RETRIES = 3


class ValidationFailed(Exception):
    pass


class ServiceUnavailable(Exception):
    pass


class LocalTelemetryHttpClient:
    def __init__(self, api_url: str):
        self.api_url = api_url.rstrip("/")
        self.posts = 0  # requests sent, retries included

    def _post(self, path: str, body) -> dict:
        for _ in range(1 + RETRIES):  # (its backoff between attempts left out)
            self.posts += 1
            response = httpx.post(f"{self.api_url}{path}", json=body, timeout=30)
            if response.status_code in (200, 201):
                return response.json()
            if response.status_code == 400:
                raise ValidationFailed(response.text)
        raise ServiceUnavailable(f"{path}: {response.status_code}")

    def post_run(self, run: dict) -> dict:
        return self._post("/api/v1/runs", run)

    def post_batch(self, runs: list[dict]) -> dict:
        body = self._post("/api/v1/runs/batch", runs)
        return {name: body[name] for name in ("inserted", "duplicates", "errors", "total")}

    def get_metrics(self) -> dict:
        metrics = httpx.get(f"{self.api_url}/metrics", timeout=30).json()
        return {name: metrics[name] for name in ("total_runs", "agents", "recent_24h")}

    def is_healthy(self) -> bool:
        return httpx.get(f"{self.api_url}/health", timeout=30).json().get("status") == "ok"


@pytest.fixture
def keyless_server(server_env):
    """The server taking key-less requests from loopback as the key `local-telemetry`."""
    make_key("local-telemetry", agents=["hugo-*"], scopes=["runs:write", "runs:read", "metrics:read"])
    with asgi_server({**server_env, "KEYLESS_WRITES_FROM": "127.0.0.1,::1", "KEYLESS_KEY": "local-telemetry"}) as base:
        yield base


def test_local_telemetrys_client_works_unchanged(keyless_server):
    client = LocalTelemetryHttpClient(keyless_server + "/")
    assert client.is_healthy()
    single = run_payload("hugo-translator")
    assert client.post_run(single)["status"] == "created"
    assert client.post_run(single)["status"] == "duplicate"
    good = [run_payload("hugo-translator"), run_payload("hugo-reviewer")]
    bad = run_payload("hugo-translator", items_failed=-3)
    batch = [*good, bad]
    first = client.post_batch(batch)
    assert (first["inserted"], first["duplicates"], first["total"]) == (2, 0, 3)
    (error,) = first["errors"]
    assert error.startswith(bad["event_id"]) and "items_failed" in error
    again = client.post_batch(batch)
    assert (again["inserted"], again["duplicates"], again["errors"], again["total"]) == (0, 2, [error], 3)
    assert client.posts == 4  # no retry: every answer was one it takes
    with pytest.raises(ValidationFailed):
        client.post_run({**run_payload("hugo-translator"), "status": "exploded"})
    with pytest.raises(ValidationFailed):
        client.post_batch({"not": "a list"})
    assert client.get_metrics() == {"total_runs": 3, "agents": {"hugo-reviewer": 1, "hugo-translator": 2}, "recent_24h": 3}
    prometheus = httpx.get(f"{keyless_server}/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
    assert prometheus.headers["content-type"].startswith("text/plain") and "telemetry_runs_total" in prometheus.text


def test_behind_a_trusted_proxy_the_clients_own_address_counts(keyless_server):
    """uvicorn trusts X-Forwarded-For from 127.0.0.1 (as from nginx on the same host): a client
    elsewhere is not let in by the proxy's address."""
    forwarded = {"X-Forwarded-For": "203.0.113.7"}
    response = httpx.post(f"{keyless_server}/api/v1/runs/batch", json=[run_payload("hugo-translator")], headers=forwarded)
    assert response.status_code == 401 and response.json()["error"]["code"] == "not_authenticated"
    assert httpx.get(f"{keyless_server}/metrics", headers=forwarded).status_code == 401
    local = httpx.get(f"{keyless_server}/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
    assert local.status_code == 200 and local.json()["total_runs"] == 0


def test_without_the_setting_it_gets_401_as_before(live_asgi):
    make_key("local-telemetry", agents=["hugo-*"], scopes=["runs:write", "runs:read", "metrics:read"])
    client = LocalTelemetryHttpClient(live_asgi)
    assert client.is_healthy()
    with pytest.raises(ServiceUnavailable):
        client.post_batch([run_payload("hugo-translator")])
    assert client.posts == 1 + RETRIES
    assert httpx.get(f"{live_asgi}/metrics").status_code == 401
