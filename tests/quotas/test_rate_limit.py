"""API_RATE_LIMIT counts every endpoint of a key (async views, traces, the live feed, /metrics),
cannot be passed by requests racing together, and counts clients without a key by address."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
import websockets.sync.client as ws
from websockets.exceptions import ConnectionClosed

from tests.conftest import make_key
from tests.quotas.bounds import api_key, refusals, refused, server
from tests.services import asgi_server

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_rate_limit_counts_async_endpoints_traces_and_the_live_feed(server_env):
    with server(server_env, API_RATE_LIMIT="12/min") as base:
        bystander_key = make_key("bystander")[1]
        quiet_client = httpx.Client(base_url=base, headers=api_key(bystander_key))
        abuser_key = api_key(make_key("abuser")[1])
        abuser = httpx.Client(base_url=base, headers=abuser_key, timeout=30)
        url = base.replace("http", "ws", 1) + "/ws/live/"

        spent = [
            abuser.post("/api/v1/agents/abuser/heartbeat", json={}),
            abuser.post("/api/v1/signals", json={"signal_type": "x"}),
            abuser.post("/api/v1/signals/receive", json={}),
            abuser.get("/api/v1/streams/consume", params={"types": "x"}),
            abuser.get("/api/v1/approvals"),
            abuser.get("/api/v1/runs"),  # a DRF view, in the same count
            abuser.post("/v1/traces", json={"resourceSpans": []}),
        ]
        assert all(response.status_code < 300 for response in spent), [r.text for r in spent]
        with ws.connect(url, additional_headers=abuser_key, open_timeout=10) as feed:
            assert json.loads(feed.recv(10))["type"] == "ready"
        for _ in range(4):
            assert abuser.post("/api/v1/agents/abuser/heartbeat", json={}).status_code == 200
        # 12 spent: every kind of endpoint is refused now.
        for response in [
            abuser.post("/api/v1/agents/abuser/heartbeat", json={}),
            abuser.post("/api/v1/signals/receive", json={}),
            abuser.get("/api/v1/runs"),
            abuser.post("/v1/traces", json={"resourceSpans": []}),
        ]:
            refused(response, 429, "throttled")
            assert 0 < int(response.headers["Retry-After"]) <= 60
        with ws.connect(url, additional_headers=abuser_key, open_timeout=10) as feed:
            assert json.loads(feed.recv(10))["error"]["code"] == "throttled"
            with pytest.raises(ConnectionClosed) as closed:
                feed.recv(10)
        assert closed.value.rcvd.code == 4429
        # Another key has its own budget.
        assert quiet_client.post("/api/v1/agents/bystander/heartbeat", json={}).status_code == 200
        counted = refusals(base)
    assert counted["throttled"] >= 5


def test_a_keys_scrapes_of_metrics_count_under_the_rate_limit(server_env):
    """/metrics reads every collector (database and Redis) on each scrape: a key scraping in a
    loop is refused past API_RATE_LIMIT as on any endpoint, and others are served."""
    with server(server_env, API_RATE_LIMIT="3/min") as base:
        scraper = httpx.Client(base_url=base, headers=api_key(make_key("scraper", scopes=["metrics:read"])[1]), timeout=30)
        assert [scraper.get("/metrics").status_code for _ in range(3)] == [200] * 3
        response = scraper.get("/metrics")
        refused(response, 429, "throttled")
        assert 0 < int(response.headers["Retry-After"]) <= 60
        other = httpx.Client(base_url=base, headers=api_key(make_key("bystander")[1]), timeout=30)
        assert other.post("/api/v1/agents/bystander/heartbeat", json={}).status_code == 200
        assert other.post("/api/v1/signals", json={"signal_type": "x", "target_agent": "peer"}).status_code == 201
        counted = refusals(base)
    assert counted["throttled"] == 1


def test_requests_racing_on_drf_views_cannot_pass_the_rate_limit_together(server_env):
    """DRF's throttle reads the request times, then writes them back: requests of one key arriving
    together (on two processes, or on threads of one) all read the same history and all passed.
    The count is one script, as for the async endpoints."""
    with asgi_server({**server_env, "API_RATE_LIMIT": "4/min"}, workers=2) as base:
        raw = make_key("racer")[1]
        start = threading.Barrier(16)
        answers: list[int] = []

        def call():
            with httpx.Client(base_url=base, headers=api_key(raw), timeout=30) as client:
                client.get("/health")  # connected before the race
                start.wait()
                answers.append(client.get("/api/v1/runs").status_code)

        racers = [threading.Thread(target=call) for _ in range(16)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(timeout=60)
        other = httpx.Client(base_url=base, headers=api_key(make_key("bystander")[1]), timeout=30)
        assert other.get("/api/v1/runs").status_code == 200
        counted = refusals(base)
    assert sorted(answers) == [200] * 4 + [429] * 12
    assert counted["throttled"] == 12


def test_a_client_without_a_key_cannot_dodge_the_rate_limit_with_x_forwarded_for(server_env):
    """Requests without a key or session (the OpenAPI schema, built anew for each) are counted by
    address. The address is the one uvicorn saw (X-Forwarded-For is trusted from the proxy alone,
    --forwarded-allow-ips), never a header the client wrote: a new X-Forwarded-For each time
    is still the same client."""
    # The trusted proxy is elsewhere (192.0.2.1): the test's requests come straight from a client.
    with server(server_env, API_RATE_LIMIT="2/min", FORWARDED_ALLOW_IPS="192.0.2.1") as base:
        answers = [httpx.get(f"{base}/api/schema/", headers={"X-Forwarded-For": f"198.51.100.{n}"}, timeout=30) for n in range(3)]
        assert [response.status_code for response in answers] == [200, 200, 429]
        assert answers[2].json()["error"]["code"] == "throttled" and 0 < int(answers[2].headers["Retry-After"]) <= 60
        other = httpx.Client(base_url=base, headers=api_key(make_key("bystander")[1]), timeout=30)
        assert other.post("/api/v1/agents/bystander/heartbeat", json={}).status_code == 200
