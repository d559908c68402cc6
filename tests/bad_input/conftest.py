"""One real server (uvicorn on the test database, small limits) for every bad-input test, a key
with every scope, and a run with an event stored before each test."""

from __future__ import annotations

import httpx
import pytest

from core.scopes import known
from tests.bad_input.limits import LIMITS, snapshot
from tests.conftest import database_url, make_key
from tests.runs.factories import run_payload
from tests.services import asgi_server, production_env


@pytest.fixture(scope="package")
def server(django_db_setup, static_root) -> str:
    """One real server for the package, with small limits so the tests stay fast. Each test makes
    its own rows (and the database is emptied after each)."""
    env = production_env(DATABASE_URL=database_url(), TELEMETRY_VAR_DIR=static_root, **LIMITS)
    with asgi_server(env) as base:
        yield base


@pytest.fixture(scope="package")
def client(server):
    """One HTTP client for the package (a new one costs an SSL context)."""
    with httpx.Client(base_url=server, timeout=30) as client:
        yield client


@pytest.fixture
def api(client) -> httpx.Client:
    """The client, with a new agent key that has every scope and may act as any agent."""
    client.headers["Authorization"] = f"Api-Key {make_key('fuzzer', agents=['*'], scopes=list(known()))[1]}"
    return client


@pytest.fixture
def before(api) -> dict:
    """A run with an event, sent before the bad input: its snapshot."""
    run = run_payload("alpha", metrics_json={"pages": 3})
    assert api.post("/api/v1/runs", json=run).status_code == 201
    event = {"event_type": "fetched", "payload": {"url": "https://example.com"}}
    assert api.post(f"/api/v1/runs/{run['event_id']}/events", json=event).status_code == 200
    return snapshot(api, run["event_id"])
