"""A key's held waits, live feeds, approval requests a minute, approval contexts and heartbeat
metadata are bounded; and the live feed replays in pages up to a cap."""

from __future__ import annotations

import json
import threading
import time
from contextlib import ExitStack

import httpx
import pytest
import websockets.sync.client as ws
from websockets.exceptions import ConnectionClosed

from core import events, streams
from tests.conftest import make_key
from tests.quotas.bounds import Bystander, api_key, refusals, refused, report, server
from tests.services import wait_until_held

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_key_holds_a_bounded_number_of_waits_and_others_are_served(server_env, tmp_path):
    log = tmp_path / "web.log"
    with server(server_env, log=log, HELD_WAITS_PER_KEY="3", LOG_LEVEL="DEBUG") as base:
        bystander = Bystander(base)
        quiet = bystander.served()
        raw = make_key("hog")[1]
        answers: list[int] = []

        def hold():
            response = httpx.post(f"{base}/api/v1/signals/receive", json={"timeout": 30}, headers=api_key(raw), timeout=60)
            answers.append(response.status_code)

        waits = [threading.Thread(target=hold) for _ in range(3)]
        for wait in waits:
            wait.start()
        wait_until_held(log, "signals:hog", count=3)
        hog = httpx.Client(base_url=base, headers=api_key(raw), timeout=30)
        refused(hog.post("/api/v1/signals/receive", json={"timeout": 5}), 429, "held_waits_per_key")
        refused(hog.get("/api/v1/streams/consume", params={"types": "x", "block_ms": 1000}), 429, "held_waits_per_key")
        assert hog.post("/api/v1/signals/receive", json={}).status_code == 200  # no wait: no slot needed
        busy = bystander.served()

        for _ in range(3):
            assert bystander.peer.post("/api/v1/signals", json={"signal_type": "go", "target_agent": "hog"}).status_code == 201
        for wait in waits:
            wait.join(timeout=60)
        assert answers == [200] * 3
        assert hog.post("/api/v1/signals/receive", json={"timeout": 0.2}).status_code == 200  # slots given back
        counted = refusals(base)
    report("held waits", quiet, busy)
    assert counted["held_waits_per_key"] == 2


def test_a_key_opens_a_bounded_number_of_live_feeds(server_env):
    with server(server_env, WEBSOCKETS_PER_KEY="2") as base:
        bystander = Bystander(base)
        quiet = bystander.served()
        headers = api_key(make_key("watcher", scopes=["streams:read"])[1])
        url = base.replace("http", "ws", 1) + "/ws/live/"
        opened = ExitStack()
        first = opened.enter_context(ws.connect(url, additional_headers=headers, open_timeout=10))
        second = opened.enter_context(ws.connect(url, additional_headers=headers, open_timeout=10))
        for feed in (first, second):
            assert json.loads(feed.recv(10))["type"] == "ready"
        with ws.connect(url, additional_headers=headers, open_timeout=10) as third:
            assert json.loads(third.recv(10))["error"]["code"] == "websockets_per_key"
            with pytest.raises(ConnectionClosed) as closed:
                third.recv(10)
        assert closed.value.rcvd.code == 4429
        busy = bystander.served()
        first.close()
        deadline = time.monotonic() + 10
        while True:  # the server frees the slot once it has seen the close
            with ws.connect(url, additional_headers=headers, open_timeout=10) as again:
                if json.loads(again.recv(10))["type"] == "ready":
                    break
            assert time.monotonic() < deadline, "the closed feed's slot was never given back"
            time.sleep(0.1)
        opened.close()
    report("websockets", quiet, busy)


def test_a_key_sends_a_bounded_number_of_approval_requests_a_minute(server_env):
    from approvals.models import ApprovalRequest

    with server(server_env, APPROVAL_REQUESTS_PER_MINUTE="3") as base:
        agent = httpx.Client(base_url=base, headers=api_key(make_key("asker")[1]), timeout=30)
        asked = [agent.post("/api/v1/approvals", json={"approval_type": "deploy"}) for _ in range(4)]
        assert [response.status_code for response in asked[:3]] == [201] * 3
        refused(asked[3], 429, "approval_requests_per_key")
        other = httpx.Client(base_url=base, headers=api_key(make_key("other")[1]), timeout=30)
        assert other.post("/api/v1/approvals", json={"approval_type": "deploy"}).status_code == 201
        counted = refusals(base)
    assert ApprovalRequest.objects.filter(agent_id="asker").count() == 3
    assert counted["approval_requests_per_key"] == 1


def test_an_approval_requests_context_is_bounded_in_size(server_env):
    """A request's context goes into each of its events (four streams of EVENT_STREAM_MAXLEN
    entries, every live feed, forwarding) and each notification: up to the API's body limit
    (256 KiB) it made one key's requests, within their rate, gigabytes of Redis. It is bounded as a
    signal's payload is; nothing is stored, mailed or published for a refused one."""
    from approvals.models import ApprovalRequest

    with server(server_env, APPROVAL_CONTEXT_MAX_BYTES="4096") as base:
        bystander = Bystander(base)
        quiet = bystander.served()
        agent = httpx.Client(base_url=base, headers=api_key(make_key("asker")[1]), timeout=30)
        big = agent.post("/api/v1/approvals", json={"approval_type": "deploy", "context": {"diff": "x" * 4096}})
        assert "APPROVAL_CONTEXT_MAX_BYTES" in refused(big, 413, "approval_context_too_large")["message"]
        assert streams.info("approval.requested")["length"] == 0
        fits = agent.post("/api/v1/approvals", json={"approval_type": "deploy", "context": {"diff": "x" * 4000}})
        assert fits.status_code == 201
        busy = bystander.served()
        counted = refusals(base)
    report("approval context", quiet, busy)
    assert list(ApprovalRequest.objects.values_list("request_id", flat=True)) == [fits.json()["request_id"]]
    assert counted["approval_context_too_large"] == 1


def test_an_agents_heartbeat_metadata_is_bounded_in_size(server_env):
    """An agent's metadata stays in its state for a day and goes into every agent.started event:
    up to the body limit it made one key's thousand agents, restarting, gigabytes of Redis."""
    with server(server_env, HEARTBEAT_METADATA_MAX_BYTES="2048") as base:
        bystander = Bystander(base)
        quiet = bystander.served()
        agent = httpx.Client(base_url=base, headers=api_key(make_key("fleet", agents=["fleet-*"])[1]), timeout=30)
        big = agent.post("/api/v1/agents/fleet-1/heartbeat/start", json={"metadata": {"notes": "x" * 2048}})
        assert "HEARTBEAT_METADATA_MAX_BYTES" in refused(big, 413, "heartbeat_metadata_too_large")["message"]
        assert agent.get("/api/v1/agents/fleet-1").status_code == 404 and streams.info("agent.started")["length"] == 0
        fits = agent.post("/api/v1/agents/fleet-1/heartbeat/start", json={"metadata": {"notes": "x" * 2000}})
        assert fits.status_code == 200 and len(fits.json()["metadata"]["notes"]) == 2000
        busy = bystander.served()
        counted = refusals(base)
    report("heartbeat metadata", quiet, busy)
    assert counted["heartbeat_metadata_too_large"] == 1


# --- 3. the live feed's replay ------------------------------------------------------------


def test_the_live_feed_replays_in_pages_up_to_a_cap_and_says_where_to_resume(server_env):
    with server(server_env, LIVE_REPLAY_MAX_EVENTS="400") as base:
        bystander = Bystander(base)
        quiet = bystander.served()
        published = []
        for start in range(0, 1500, 100):
            batch = [events.Event("flood.a" if n % 5 else "flood.b", {"n": start + n}) for n in range(100)]
            published += zip([event.event_type for event in batch], events.publish_now(batch), strict=True)
        headers = api_key(make_key("replayer", scopes=["streams:read"])[1])
        url = base.replace("http", "ws", 1) + "/ws/live/?types=flood.a,flood.b"
        got: list[tuple[str, str]] = []
        since, connections = "0", 0
        while connections < 10:
            connections += 1
            with ws.connect(f"{url}&since={since}", additional_headers=headers, open_timeout=10) as feed:
                page: list[tuple[str, str]] = []
                while (message := json.loads(feed.recv(10)))["type"] == "events":
                    page += [(event["event_type"], event["event_id"]) for event in message["events"]]
                got += page
                assert len(page) <= 2 * 500  # a page reads at most 500 entries of each stream
                if message["type"] == "ready":
                    break
                assert message["error"]["code"] == "replay_limit"
                since = message["error"]["since"]
        busy = bystander.served()
        counted = refusals(base)
    report("live replay", quiet, busy)
    assert connections > 1
    assert sorted(got) == sorted(published) and len(set(got)) == 1500  # nothing lost, nothing twice
    assert counted["replay_limit"] == connections - 1
