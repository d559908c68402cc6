"""Coordination signals on the real Redis: delivery counts, TTL expiry, peeking, waits that wake
on arrival, and who may send and receive."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from core import streams
from tests.conftest import key_client, make_key
from tests.services import asgi_server, held_waits, wait_until_held

pytestmark = pytest.mark.django_db


def send(client, signal_type="go", **fields):
    response = client.post("/api/v1/signals", {"signal_type": signal_type, **fields}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def receive(client, **fields):
    response = client.post("/api/v1/signals/receive", fields, format="json")
    assert response.status_code == 200, response.content
    return response.json()["signal"]


@pytest.fixture
def fleet(db):
    """Agent clients named a, b and c, each with a key for itself only."""
    return {name: key_client(make_key(name)[1]) for name in "abc"}


def test_a_directed_signal_reaches_its_target_once(fleet):
    sent = send(fleet["a"], target_agent="b", payload={"step": 2}, ttl_seconds=30)
    assert (sent["source_agent"], sent["target_agent"], sent["ttl_seconds"]) == ("a", "b", 30)
    assert receive(fleet["c"], signal_type="go") is None
    got = receive(fleet["b"], signal_type="go")
    assert got["signal_id"] == sent["signal_id"] and got["payload"] == {"step": 2}
    assert receive(fleet["b"], signal_type="go") is None
    assert [e["data"]["signal_id"] for e in streams.recent("signal.sent", 5)] == [sent["signal_id"]]


def test_a_broadcast_reaches_each_other_agent_once(fleet):
    sent = send(fleet["a"], payload={"all": True})
    assert sent["target_agent"] is None and sent["ttl_seconds"] == 60
    for name in "bc":
        assert receive(fleet[name], signal_type="go")["signal_id"] == sent["signal_id"]
        assert receive(fleet[name], signal_type="go") is None
    assert receive(fleet["a"], signal_type="go") is None  # not to its sender


def test_signals_come_oldest_first_filtered_by_type_and_source(fleet):
    first = send(fleet["a"], "go", target_agent="c")
    send(fleet["b"], "stop", target_agent="c")
    third = send(fleet["b"], "go")
    assert receive(fleet["c"], signal_type="go", source_agent="b")["signal_id"] == third["signal_id"]
    assert receive(fleet["c"], signal_type="go")["signal_id"] == first["signal_id"]
    assert receive(fleet["c"])["signal_type"] == "stop"
    assert receive(fleet["c"]) is None


def test_peek_leaves_the_signal_and_pending_lists_without_taking(fleet):
    directed = send(fleet["a"], "go", target_agent="b")
    broadcast = send(fleet["c"], "halt")
    assert receive(fleet["b"], signal_type="go", consume=False)["signal_id"] == directed["signal_id"]
    pending = fleet["b"].get("/api/v1/signals").json()
    assert [s["signal_id"] for s in pending] == [directed["signal_id"], broadcast["signal_id"]]
    assert [s["signal_id"] for s in fleet["b"].get("/api/v1/signals", {"signal_type": "halt"}).json()] == [broadcast["signal_id"]]
    assert receive(fleet["b"], signal_type="go")["signal_id"] == directed["signal_id"]


def test_clear_drops_an_agents_signals_but_not_anyone_elses(fleet):
    send(fleet["a"], "go", target_agent="b")
    send(fleet["a"], "halt")
    assert fleet["b"].delete("/api/v1/signals?signal_type=go").json() == {"cleared": 1}
    assert fleet["b"].delete("/api/v1/signals").json() == {"cleared": 1}
    assert fleet["b"].get("/api/v1/signals").json() == []
    assert receive(fleet["c"], signal_type="halt") is not None


def test_an_expired_signal_is_never_delivered(fleet):
    send(fleet["a"], "go", target_agent="b", ttl_seconds=1)
    send(fleet["a"], "go", ttl_seconds=1)
    assert len(fleet["b"].get("/api/v1/signals").json()) == 2
    time.sleep(1.1)
    assert receive(fleet["b"], signal_type="go") is None
    assert fleet["b"].get("/api/v1/signals").json() == []


def test_a_key_cannot_send_or_receive_as_another_agent(fleet):
    forged = fleet["a"].post("/api/v1/signals", {"signal_type": "go", "source_agent": "b"}, format="json")
    assert forged.status_code == 403 and forged.json()["error"]["code"] == "agent_forbidden"
    send(fleet["c"], "go", target_agent="b")
    stolen = fleet["a"].post("/api/v1/signals/receive", {"agent_id": "b"}, format="json")
    assert stolen.status_code == 403
    assert fleet["a"].get("/api/v1/signals", {"agent_id": "b"}).status_code == 403
    assert fleet["a"].delete("/api/v1/signals?agent_id=b").status_code == 403
    assert receive(fleet["b"])["source_agent"] == "c"  # still there for its owner


def test_a_key_for_several_agents_must_name_one(db):
    client = key_client(make_key("crew", agents=["crew-*"])[1])
    response = client.post("/api/v1/signals", {"signal_type": "go"}, format="json")
    assert response.status_code == 400 and "source_agent" in response.json()["error"]["fields"]
    assert send(client, source_agent="crew-1", target_agent="crew-2")["source_agent"] == "crew-1"
    assert receive(client, agent_id="crew-2")["source_agent"] == "crew-1"


def test_bad_signals_are_refused_with_the_field_named(fleet):
    cases = [
        ({"signal_type": "has space"}, "signal_type"),
        ({"signal_type": "go", "ttl_seconds": 0}, "ttl_seconds"),
        ({"signal_type": "go", "payload": [1]}, "payload"),
        ({"signal_type": "go", "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        response = fleet["a"].post("/api/v1/signals", body, format="json")
        assert response.status_code == 400 and field in response.json()["error"]["fields"], body
    negative = fleet["a"].post("/api/v1/signals/receive", {"timeout": -1}, format="json")
    assert negative.status_code == 400
    assert fleet["b"].get("/api/v1/signals").json() == []


def test_read_scope_may_look_but_not_take(db):
    reader = key_client(make_key("b", scopes=["coordination:read"])[1])
    assert reader.get("/api/v1/signals").status_code == 200
    assert reader.post("/api/v1/signals/receive", {}, format="json").status_code == 403


@pytest.fixture
def served(server_env, tmp_path):
    """Keys for agents a and b, the running server's URL, and its log (at DEBUG: the waits it holds)."""
    log = tmp_path / "web.log"
    headers = {name: {"Authorization": f"Api-Key {make_key(name)[1]}"} for name in "ab"}
    with asgi_server({**server_env, "LOG_LEVEL": "DEBUG"}, log=log) as base:
        yield base, headers, log


def test_a_wait_wakes_when_the_signal_arrives_and_times_out_empty(served):
    base, headers, log = served
    answers = {}

    def wait(name, **fields):
        response = httpx.post(f"{base}/api/v1/signals/receive", json=fields, headers=headers[name], timeout=60)
        answers[name] = response.json()["signal"]

    waiter = threading.Thread(target=wait, args=("b",), kwargs={"signal_type": "go", "timeout": 50})
    waiter.start()
    wait_until_held(log, "signals:b")
    # Woken by the send, long before its 50 s timeout: a wait that ended at its timeout would find
    # the signal gone (its TTL is 10 s).
    body = {"signal_type": "go", "target_agent": "b", "ttl_seconds": 10}
    sent = httpx.post(f"{base}/api/v1/signals", json=body, headers=headers["a"])
    waiter.join(timeout=60)
    assert answers["b"]["signal_id"] == sent.json()["signal_id"]

    wait("b", signal_type="go", timeout=0.5)
    assert answers["b"] is None
    assert held_waits(log, "signals:b") == 2  # held for its timeout, not answered at once


def test_one_broadcast_wakes_every_waiter_once(served):
    base, headers, log = served
    headers["c"] = {"Authorization": f"Api-Key {make_key('c')[1]}"}
    got: dict[str, list] = {"b": [], "c": []}

    def wait(name):
        for _ in range(2):
            body = {"signal_type": "go", "timeout": 2}
            answer = httpx.post(f"{base}/api/v1/signals/receive", json=body, headers=headers[name], timeout=30)
            got[name].append(answer.json()["signal"])

    waiters = [threading.Thread(target=wait, args=(name,)) for name in "bc"]
    for waiter in waiters:
        waiter.start()
    wait_until_held(log, "signals:b")
    wait_until_held(log, "signals:c")
    sent = httpx.post(f"{base}/api/v1/signals", json={"signal_type": "go"}, headers=headers["a"]).json()
    for waiter in waiters:
        waiter.join(timeout=20)
    for name in "bc":
        assert [s and s["signal_id"] for s in got[name]] == [sent["signal_id"], None]
