"""The bounds on what one agent key can consume (core.quotas), each tried on the real server: the
abuse is refused or bounded, with its error code, nothing it asked for is stored, /metrics counts
the refusal, and another agent's heartbeats, signals and live feed are served meanwhile (their
latency is printed against a quiet run, not asserted)."""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from contextlib import ExitStack, contextmanager

import httpx
import pytest
import websockets.sync.client as ws
from websockets.exceptions import ConnectionClosed

from coordination import heartbeats
from coordination.models import Agent
from core import events, streams
from core.redis import get_redis
from tests.conftest import make_key
from tests.services import PROMETHEUS_ACCEPT, asgi_server, wait_until_held

pytestmark = pytest.mark.django_db(transaction=True)


def api_key(raw: str) -> dict[str, str]:
    return {"Authorization": f"Api-Key {raw}"}


class Bystander:
    """Another agent ('bystander', with its own key and a peer that signals it) and a reader of
    the live feed: served() checks each is served and times it."""

    def __init__(self, base: str):
        self.base = base
        self.agent = httpx.Client(base_url=base, headers=api_key(make_key("bystander")[1]), timeout=30)
        self.peer = httpx.Client(base_url=base, headers=api_key(make_key("peer")[1]), timeout=30)
        self.reader = api_key(make_key("reader", scopes=["streams:read"])[1])

    def served(self, rounds: int = 5) -> dict[str, float]:
        """Median milliseconds of a heartbeat, a signal (sent, then received), and a live feed
        (connected, then an event published and received); each asserted served."""
        times: dict[str, list[float]] = {"heartbeat": [], "signal": [], "feed": []}
        url = self.base.replace("http", "ws", 1) + "/ws/live/?types=bystander.mark"
        for _ in range(rounds):
            start = time.perf_counter()
            assert self.agent.post("/api/v1/agents/bystander/heartbeat", json={}).status_code == 200
            times["heartbeat"].append(time.perf_counter() - start)

            start = time.perf_counter()
            sent = self.peer.post("/api/v1/signals", json={"signal_type": "nudge", "target_agent": "bystander"})
            assert sent.status_code == 201, sent.text
            got = self.agent.post("/api/v1/signals/receive", json={"signal_type": "nudge"}).json()["signal"]
            assert got["signal_id"] == sent.json()["signal_id"]
            times["signal"].append(time.perf_counter() - start)

            start = time.perf_counter()
            with ws.connect(url, additional_headers=self.reader, open_timeout=10) as feed:
                assert json.loads(feed.recv(10))["type"] == "ready"
                mark = uuid.uuid4().hex
                events.publish_now([events.Event("bystander.mark", {"mark": mark})])
                assert json.loads(feed.recv(10))["events"][0]["data"] == {"mark": mark}
            times["feed"].append(time.perf_counter() - start)
        return {name: statistics.median(values) * 1000 for name, values in times.items()}


def report(name: str, quiet: dict[str, float], busy: dict[str, float]) -> None:
    for what in quiet:
        print(f"{name}: bystander's {what} {busy[what]:.1f} ms (quiet run {quiet[what]:.1f} ms, x{busy[what] / quiet[what]:.2f})")


def refused(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    return error


def refusals(base: str) -> dict[str, float]:
    """telemetry_quota_refusals_total by bound, as /metrics serves it."""
    scraper = make_key(f"prometheus-{uuid.uuid4().hex[:6]}", scopes=["metrics:read"])[1]
    text = httpx.get(f"{base}/metrics", headers={**api_key(scraper), "Accept": PROMETHEUS_ACCEPT}).text
    found = {}
    for line in text.splitlines():
        if line.startswith("telemetry_quota_refusals_total{"):
            labels, value = line.rsplit(" ", 1)
            found[labels.split('bound="')[1].split('"')[0]] = float(value)
    return found


@contextmanager
def server(server_env, log=None, **settings: str):
    with asgi_server({**server_env, **settings}, log=log) as base:
        yield base


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


# --- 2. every endpoint counted; held waits, websockets and approvals per key ---------------


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
        assert [response.status_code for response in answers] == [200, 200, 429]  # (the schema view answers in YAML)
        assert "throttled" in answers[2].text and 0 < int(answers[2].headers["Retry-After"]) <= 60
        other = httpx.Client(base_url=base, headers=api_key(make_key("bystander")[1]), timeout=30)
        assert other.post("/api/v1/agents/bystander/heartbeat", json={}).status_code == 200


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
        if time.time() % 60 > 45:  # the count is per minute of the clock: not across its turn
            time.sleep(61 - time.time() % 60)
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
