"""Did a run reach the systems records are forwarded to? Per run, from the batch deliveries, on
the real server with a real worker and beat: one channel's receiver answers, another's is dead."""

from __future__ import annotations

import time

import httpx
import pytest

from notifications.models import NotificationChannel
from tests.conftest import make_key
from tests.fakes import http_receiver
from tests.runs.factories import run_payload
from tests.services import asgi_server, celery_processes

pytestmark = pytest.mark.django_db(transaction=True)

DEAD = "http://127.0.0.1:9/hook"  # the discard port: nothing listens there


def deliveries_until(base: str, headers: dict, event_id: str, done, seconds: float = 30) -> list[dict]:
    deadline = time.monotonic() + seconds
    while True:
        found = httpx.get(f"{base}/api/v1/runs/{event_id}", headers=headers).json()["deliveries"]
        if done(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def test_each_run_says_which_channels_its_announcement_reached(server_env, admin_client):
    headers = {"Authorization": f"Api-Key {make_key('alpha')[1]}"}
    env = {**server_env, "FORWARD_SECONDS": "1", "DELIVERY_RETRY_SECONDS": "1"}
    settled = lambda found: {row["channel"]: row["status"] for row in found}  # noqa: E731
    with (
        http_receiver(statuses=[200] + [500] * 200) as (flaky, received),  # the first batch only
        http_receiver() as (url, _),
        asgi_server(env) as base,
        celery_processes(env),
    ):
        NotificationChannel.objects.create(name="warehouse", kind="webhook", target=flaky, forwards=["run.ended"])
        NotificationChannel.objects.create(name="dead", kind="webhook", target=DEAD, forwards=["run.ended"])
        NotificationChannel.objects.create(name="starts", kind="webhook", target=url, forwards=["run.started"])
        time.sleep(0.01)  # a channel forwards what comes after it
        first, running = run_payload(status="success"), run_payload(status="running")
        for run in (first, running):
            assert httpx.post(f"{base}/api/v1/runs", json=run, headers=headers).status_code == 201
        found = deliveries_until(base, headers, first["event_id"], lambda f: settled(f).get("warehouse") == "delivered")
        assert settled(found)["warehouse"] == "delivered" and {row["event_type"] for row in found} == {"run.ended"}
        dead = next(row for row in found if row["channel"] == "dead")
        assert dead["status"] in ("pending", "failed") and dead["delivered_at"] is None  # tried, not delivered
        found = deliveries_until(base, headers, running["event_id"], lambda f: settled(f) == {"starts": "delivered"})
        assert settled(found) == {"starts": "delivered"}  # while it runs: its run.started

        # A later run is in a later batch, which the warehouse refuses: its own status, not the first's.
        second = run_payload(status="failed")
        assert httpx.post(f"{base}/api/v1/runs", json=second, headers=headers).status_code == 201
        found = deliveries_until(base, headers, second["event_id"], lambda f: len(received) >= 2)
        assert settled(found)["warehouse"] == "pending" and any(second["event_id"] in r["body"].decode() for r in received[1:])
        assert settled(deliveries_until(base, headers, first["event_id"], bool))["warehouse"] == "delivered"

        # A channel made after the runs: they were never forwarded there.
        NotificationChannel.objects.create(name="late", kind="webhook", target=url, forwards=["run.ended"])
        assert settled(deliveries_until(base, headers, first["event_id"], bool))["late"] == "not_forwarded"

    pk = admin_client.get(f"/admin/runs/run/?q={first['event_id']}").context["cl"].result_list[0].pk
    shown = admin_client.get(f"/admin/runs/run/{pk}/change/").content.decode()
    assert "warehouse: run.ended delivered" in shown and "late: run.ended not forwarded" in shown
