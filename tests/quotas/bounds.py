"""What the quota tests share: a server with the bounds a test sets, the refusal an abuse gets and
its count on /metrics, and a bystander agent whose service is checked (and timed) meanwhile."""

from __future__ import annotations

import json
import statistics
import time
import uuid
from contextlib import contextmanager

import httpx
import websockets.sync.client as ws

from core import events
from tests.conftest import make_key
from tests.services import PROMETHEUS_ACCEPT, asgi_server


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
