"""What one key can make the server keep: signals (per sender, per inbox, in size), stream event
types and entries, agent ids, metric names and series; and the sweep of expired agents."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from coordination import heartbeats
from coordination.models import Agent
from core import streams
from core.redis import get_redis
from tests.conftest import make_key
from tests.quotas.bounds import Bystander, api_key, refusals, refused, report, server

pytestmark = pytest.mark.django_db(transaction=True)


def commands_called(name: str) -> int:
    """How many times Redis ran `name` (scripts' calls included), from INFO commandstats."""
    return get_redis().info("commandstats").get(f"cmdstat_{name}", {}).get("calls", 0)


# --- 1. Redis: signals, streams, agent ids ------------------------------------------------


def test_signals_are_bounded_per_sender_per_inbox_and_in_size_and_a_take_reads_a_window(server_env):
    settings = {"SIGNALS_PER_SENDER": "30", "SIGNALS_PER_INBOX": "10", "SIGNAL_MAX_PAYLOAD_BYTES": "1024",
                "SIGNAL_BROADCAST_WINDOW": "20"}  # fmt: skip
    with server(server_env, **settings) as base:
        bystander = Bystander(base)
        quiet = bystander.served()
        swarm = httpx.Client(base_url=base, headers=api_key(make_key("swarm", agents=["swarm-*"])[1]), timeout=30)

        def send(source: str, **fields) -> httpx.Response:
            return swarm.post("/api/v1/signals", json={"signal_type": "spam", "source_agent": source, **fields})

        big = send("swarm-0", target_agent="victim", payload={"pad": "x" * 1024})
        refused(big, 413, "signal_payload_too_large")
        assert "SIGNAL_MAX_PAYLOAD_BYTES" in big.json()["error"]["message"]

        assert [send("swarm-0", target_agent="victim").status_code for _ in range(10)] == [201] * 10
        refused(send("swarm-1", target_agent="victim"), 429, "signals_per_inbox")
        victim = httpx.Client(base_url=base, headers=api_key(make_key("victim")[1]), timeout=30)
        assert len(victim.get("/api/v1/signals").json()) == 10  # the refused ones were not stored

        # swarm-0 has 10 live directed signals: 20 broadcasts more reach its bound.
        assert [send("swarm-0").status_code for _ in range(20)] == [201] * 20
        refused(send("swarm-0"), 429, "signals_per_sender")
        # Its taken signals are no longer live: the victim takes them, and swarm-0 may send again.
        assert victim.delete("/api/v1/signals", params={"signal_type": "spam"}).json() == {"cleared": 30}
        assert send("swarm-0", target_agent="victim").status_code == 201

        # Many senders, many live broadcasts: a take reads at most the window past its cursor.
        for sender in range(1, 11):
            assert {send(f"swarm-{sender}").status_code for _ in range(30)} == {201}
        assert get_redis().zcard("telemetry:signals:broadcast-order:") == 320
        before = commands_called("hget")
        got = bystander.agent.post("/api/v1/signals/receive", json={"signal_type": "spam"}).json()["signal"]
        assert got["source_agent"] == "swarm-0"
        assert commands_called("hget") - before <= 20 + 1  # the window's bodies, and the cursor

        busy = bystander.served()
        counted = refusals(base)
    report("signals", quiet, busy)
    assert counted["signal_payload_too_large"] == 1
    assert counted["signals_per_inbox"] == 1 and counted["signals_per_sender"] == 1


def test_a_broadcast_still_reaches_each_agent_once_past_the_window(live_asgi):
    """The cursor moves past what an agent took: with more broadcasts than the window, each
    agent still gets every one, once, oldest first."""
    sender = httpx.Client(base_url=live_asgi, headers=api_key(make_key("sender")[1]), timeout=30)
    receiver = httpx.Client(base_url=live_asgi, headers=api_key(make_key("receiver")[1]), timeout=30)
    sent = [sender.post("/api/v1/signals", json={"signal_type": "tick"}).json()["signal_id"] for _ in range(130)]
    got = []
    for _ in range(140):
        signal = receiver.post("/api/v1/signals/receive", json={}).json()["signal"]
        if signal is None:
            break
        got.append(signal["signal_id"])
    assert got == sent


def test_keys_without_streams_admin_create_few_event_types_and_small_entries(server_env):
    settings = {"STREAM_NEW_TYPES_PER_KEY": "3", "STREAM_ENTRY_MAX_BYTES": "2048"}
    with server(server_env, **settings) as base:
        bystander = Bystander(base)
        quiet = bystander.served()
        agent = httpx.Client(base_url=base, headers=api_key(make_key("mint")[1]), timeout=30)
        admin = httpx.Client(base_url=base, headers=api_key(make_key("ops", scopes=["streams:admin", "streams:write"])[1]))

        for n in range(3):
            assert agent.post(f"/api/v1/streams/mint.{n}", json={"data": {}}).status_code == 201
        refused(agent.post("/api/v1/streams/mint.3", json={"data": {}}), 429, "new_event_types")
        assert "mint.3" not in streams.event_types()
        assert agent.post("/api/v1/streams/mint.0", json={"data": {}}).status_code == 201  # an existing type is free
        assert agent.post("/api/v1/streams/bystander.mark", json={"data": {}}).status_code == 201

        refused(agent.post("/api/v1/streams/mint.0", json={"data": {"pad": "x" * 2048}}), 413, "stream_entry_too_large")
        assert streams.info("mint.0")["length"] == 2

        assert admin.post("/api/v1/streams/admin.new", json={"data": {"pad": "x" * 4096}}).status_code == 201
        busy = bystander.served()
        counted = refusals(base)
    report("streams", quiet, busy)
    assert counted["new_event_types"] == 1 and counted["stream_entry_too_large"] == 1


def test_a_glob_key_registers_a_bounded_number_of_agent_ids(server_env):
    with server(server_env, AGENTS_PER_KEY="5") as base:
        bystander = Bystander(base)
        quiet = bystander.served()
        swarm = httpx.Client(base_url=base, headers=api_key(make_key("swarm", agents=["swarm-*"])[1]), timeout=30)
        assert [swarm.post(f"/api/v1/agents/swarm-{n}/heartbeat", json={}).status_code for n in range(5)] == [200] * 5
        refused(swarm.post("/api/v1/agents/swarm-5/heartbeat", json={}), 429, "agents_per_key")
        refused(swarm.post("/api/v1/agents/swarm-6/heartbeat/start", json={}), 429, "agents_per_key")
        assert swarm.post("/api/v1/agents/swarm-0/heartbeat", json={}).status_code == 200  # known ids beat on
        assert swarm.get("/api/v1/agents/swarm-5").status_code == 404
        assert get_redis().zscore(heartbeats.LAST_BEATS, "swarm-5") is None
        busy = bystander.served()
        counted = refusals(base)
    report("agent ids", quiet, busy)
    assert not Agent.objects.filter(agent_id__in=["swarm-5", "swarm-6"]).exists()
    assert counted["agents_per_key"] == 2


def test_a_glob_keys_signal_senders_count_as_its_agent_ids(server_env):
    """A glob key names any number of agents: without counting the senders it signals as, it
    would multiply SIGNALS_PER_SENDER by as many names as it likes. Its senders and its beating
    agents share AGENTS_PER_KEY, so its live signals are at most AGENTS_PER_KEY x SIGNALS_PER_SENDER."""
    with server(server_env, AGENTS_PER_KEY="3", SIGNALS_PER_SENDER="2") as base:
        bystander = Bystander(base)
        quiet = bystander.served()
        swarm = httpx.Client(base_url=base, headers=api_key(make_key("swarm", agents=["swarm-*"])[1]), timeout=30)

        def send(source: str, **fields) -> httpx.Response:
            return swarm.post("/api/v1/signals", json={"signal_type": "spam", "source_agent": source, **fields})

        assert swarm.post("/api/v1/agents/swarm-0/heartbeat", json={}).status_code == 200
        assert [send(f"swarm-{n}", target_agent="victim").status_code for n in range(3) for _ in range(2)] == [201] * 6
        refused(send("swarm-3", target_agent="victim"), 429, "agents_per_key")
        refused(send("swarm-4"), 429, "agents_per_key")  # a broadcast as well
        refused(swarm.post("/api/v1/agents/swarm-5/heartbeat", json={}), 429, "agents_per_key")
        refused(send("swarm-0", target_agent="victim"), 429, "signals_per_sender")  # known senders keep their bound
        victim = httpx.Client(base_url=base, headers=api_key(make_key("victim")[1]), timeout=30)
        assert len(victim.get("/api/v1/signals").json()) == 6
        assert not get_redis().exists("telemetry:signals:sent:swarm-3", "telemetry:signals:sent:swarm-4")
        busy = bystander.served()
        counted = refusals(base)
    report("signal senders", quiet, busy)
    assert counted["agents_per_key"] == 3 and counted["signals_per_sender"] == 1


def test_a_key_creates_a_bounded_number_of_metric_names_and_series(server_env):
    from metrics.models import MetricSeries

    with server(server_env, METRIC_NAMES_PER_KEY="3", METRIC_SERIES_PER_KEY="5") as base:
        bystander = Bystander(base)
        quiet = bystander.served()
        agent = httpx.Client(base_url=base, headers=api_key(make_key("alpha")[1]), timeout=30)

        def points(*pairs: tuple[str, str]) -> list[dict]:
            return [{"agent_name": "alpha", "name": name, "metric_type": "counter", "value": 1, "labels": {"run": run},
                     "event_id": uuid.uuid4().hex} for name, run in pairs]  # fmt: skip

        names = agent.post("/api/v1/metrics", json=points(*[(f"minted_{n}_total", "1") for n in range(5)])).json()
        assert [r.get("error", {}).get("code") for r in names["results"]] == [None] * 3 + ["metric_names_per_key"] * 2
        series = agent.post("/api/v1/metrics", json=points(*[("minted_0_total", str(n)) for n in range(2, 6)])).json()
        assert [r.get("error", {}).get("code") for r in series["results"]] == [None] * 2 + ["metric_series_per_key"] * 2
        again = agent.post("/api/v1/metrics", json=points(("minted_0_total", "1"), ("minted_2_total", "1")))
        assert again.json()["failed"] == 0  # its own names and series take more points
        busy = bystander.served()
        counted = refusals(base)
    report("metric names", quiet, busy)
    assert MetricSeries.objects.filter(name__startswith="minted_").count() == 5
    assert counted["metric_names_per_key"] == 2 and counted["metric_series_per_key"] == 2


def test_the_stale_sweep_drops_agents_whose_live_state_expired(settings):
    settings.AGENT_STATE_TTL = 60
    now = time.time()
    get_redis().zadd(heartbeats.LAST_BEATS, {"gone": now - 61, "here": now - 30})
    heartbeats.sweep()
    assert get_redis().zrange(heartbeats.LAST_BEATS, 0, -1) == [b"here"]
