"""One worker at a time sends to a channel, through a real Celery worker with two pool processes:
while one holds a delivery in flight, the other leaves the channel's next delivery untried for
the retry sweep, which sends it once the channel is free."""

from __future__ import annotations

import threading
import time

import pytest

from notifications import sending, services
from notifications.models import Delivery, Notification, NotificationChannel
from tests.fakes import http_receiver
from tests.services import celery_processes

DEADLINE = 60  # seconds any one step may take on a loaded machine


def wait_for(condition, what: str):
    deadline = time.monotonic() + DEADLINE
    while not (found := condition()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)
    return found


def left_busy(log) -> bool:
    """Whether the worker writing `log` (at INFO) found the channel busy and left its delivery."""
    return log.exists() and "is busy in another worker; 1 deliveries left for the retry sweep" in log.read_text()


@pytest.mark.django_db(transaction=True)
def test_a_channel_busy_in_one_worker_process_is_left_alone_by_the_other(server_env, tmp_path):
    hold, log = threading.Event(), tmp_path / "worker.log"
    env = {**server_env, "LOG_LEVEL": "INFO"}
    with http_receiver(hold=hold) as (url, received), celery_processes(env, beat=False, log=log):
        channel = NotificationChannel.objects.create(name="slow", kind="webhook", target=url)
        services.notify(Notification(topic="alert.opened", subject="first", text="t"), [channel])
        wait_for(lambda: received, "the first delivery to reach the receiver")  # and be held there
        services.notify(Notification(topic="alert.opened", subject="second", text="t"), [channel])
        # The other pool process takes the second task while the first is still in flight.
        wait_for(lambda: left_busy(log), "the second task to find the channel busy")
        assert len(received) == 1
        second = Delivery.objects.get(notification__subject="second")
        assert (second.status, second.attempts) == ("pending", 0)  # left untried, as it was
        hold.set()
        first = wait_for(lambda: Delivery.objects.filter(notification__subject="first", status="delivered").first(), "the first")
        assert first.attempts == 1
        assert sending.send(sending.due_deliveries())["delivered"] == 1  # the retry sweep's turn
    second.refresh_from_db()
    assert (second.status, second.attempts) == ("delivered", 1)
    assert [request["body"].count(b'"subject": "first"') for request in received] == [1, 0]
    assert len(received) == 2
