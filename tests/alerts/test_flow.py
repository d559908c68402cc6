"""End to end with the real web server, Celery worker and beat: a silent agent alerts once and its
recovery resolves it; a finished run is forwarded as a record; all to a real local receiver."""

from __future__ import annotations

import json
import time

import httpx

from alerts.models import AlertRule
from notifications.models import NotificationChannel
from tests.conftest import make_key
from tests.fakes import http_receiver
from tests.runs.factories import run_payload
from tests.services import asgi_server, celery_processes

FAST = {"STALE_SWEEP_SECONDS": "1", "ALERT_EVALUATE_SECONDS": "1", "FORWARD_SECONDS": "1", "DELIVERY_RETRY_SECONDS": "1"}


def topics(received: list[dict]) -> list[str]:
    return [json.loads(request["body"])["topic"] for request in received]


def wait_until(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.2)


def test_beat_and_a_worker_alert_resolve_and_forward(server_env):
    headers = {"Authorization": f"Api-Key {make_key('alpha')[1]}"}
    env = {**server_env, **FAST}
    with http_receiver() as (url, received):
        oncall = NotificationChannel.objects.create(name="oncall", kind="webhook", target=url)
        NotificationChannel.objects.create(name="sink", kind="webhook", target=url, forwards=["run.ended"])
        AlertRule.objects.create(name="silent agents", kind="agent_stale").channels.set([oncall])
        with asgi_server(env) as base, celery_processes(env):
            api = httpx.Client(base_url=f"{base}/api/v1", headers=headers, timeout=10)
            api.post("/agents/alpha/heartbeat/start", json={"stale_after_seconds": 1}).raise_for_status()
            run = run_payload(status="success", end_time="2026-01-01T10:00:05Z", start_time="2026-01-01T10:00:00Z")
            api.post("/runs", json=run).raise_for_status()
            wait_until(lambda: {"alert.opened", "run.ended"} <= set(topics(received)))
            # Back, and now with time to spare between beats: the alert resolves, and stays so.
            api.post("/agents/alpha/heartbeat/start", json={"stale_after_seconds": 60}).raise_for_status()
            wait_until(lambda: "alert.closed" in topics(received))
            time.sleep(3)  # more sweeps, evaluations and forwarding passes: nothing is sent twice
    assert sorted(topics(received)) == ["alert.closed", "alert.opened", "run.ended"]
    forwarded = next(json.loads(r["body"]) for r in received if json.loads(r["body"])["topic"] == "run.ended")
    assert [record["data"]["event_id"] for record in forwarded["records"]] == [run["event_id"]]
