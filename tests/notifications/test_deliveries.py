"""Deliveries: forwarded records and notifications, signed, retried with backoff against a real
local receiver, failed ones retried from the admin, and a dead receiver costing one try per backoff, one worker at a time."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from core import events, streams
from core.redis import get_redis
from notifications import forwarding, sending, services
from notifications.models import Delivery, Notification, NotificationChannel
from tests.fakes import http_receiver

DEAD = "http://127.0.0.1:9/hook"  # the discard port: nothing listens there


def verified(channel: NotificationChannel, request: dict) -> dict:
    signed = request["headers"]["X-Telemetry-Timestamp"].encode() + b"." + request["body"]
    expected = hmac.new(channel.secret.encode(), signed, hashlib.sha256).hexdigest()
    assert request["headers"]["X-Telemetry-Signature"] == f"sha256={expected}"
    return json.loads(request["body"])


@pytest.mark.django_db
def test_forwarded_events_are_signed_and_sent_once(eager):
    events.publish_now([events.Event("run.ended", {"run_id": "before"})])  # before the subscription: not sent
    time.sleep(0.01)
    with http_receiver() as (url, received):
        channel = NotificationChannel.objects.create(name="sink", kind="webhook", target=url, forwards=["run.ended"])
        time.sleep(0.01)
        events.publish_now([events.Event("run.ended", {"run_id": f"r{n}"}) for n in range(3)])
        events.publish_now([events.Event("run.started", {"run_id": "r9"})])  # not a type it forwards
        assert forwarding.forward_events() == 3
        assert forwarding.forward_events() == 0
    [body] = [verified(channel, request) for request in received]  # one message for the three
    assert [record["data"]["run_id"] for record in body["records"]] == ["r0", "r1", "r2"]
    assert body["records"] == streams.recent("run.ended", 3)  # as the API reads them from the stream
    assert (body["topic"], body["subject"]) == ("run.ended", "3 run.ended records")
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.records) == ("delivered", 3)
    first, last = body["records"][0]["event_id"], body["records"][-1]["event_id"]
    assert delivery.record_id == f"run.ended:{first}..{last}"


@pytest.mark.django_db
def test_forwarded_events_are_sent_in_batches_in_stream_order(eager, monkeypatch):
    monkeypatch.setattr(forwarding, "FORWARD_BATCH", 4)
    with http_receiver() as (url, received):
        NotificationChannel.objects.create(name="sink", kind="webhook", target=url, forwards=["run.ended"])
        time.sleep(0.01)
        events.publish_now([events.Event("run.ended", {"run_id": f"r{n}"}) for n in range(10)])
        assert forwarding.forward_events() == 10
        events.publish_now([events.Event("run.ended", {"run_id": "r10"})])
        assert forwarding.forward_events() == 1
    batches = [[record["data"]["run_id"] for record in json.loads(r["body"])["records"]] for r in received]
    assert batches == [["r0", "r1", "r2", "r3"], ["r4", "r5", "r6", "r7"], ["r8", "r9"], ["r10"]]
    assert sorted(Delivery.objects.values_list("records", flat=True)) == [1, 2, 4, 4]


@pytest.mark.django_db
def test_forwarded_records_are_stored_lz4_compressed_or_uncompressed_on_postgresql():
    """Not pglz, PostgreSQL's default, which made forwarding cost ingestion (the migration's why)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("SQLite does not compress")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attcompression, attstorage FROM pg_attribute"
            " WHERE attrelid = 'notifications_delivery'::regclass AND attname = 'records_json'"
        )
        compression, storage = cursor.fetchone()
    assert compression == "l" or storage == "e"


@pytest.mark.django_db
def test_records_forwarded_by_mail_list_each_event(eager):
    NotificationChannel.objects.create(name="archive", kind="email", target="ops@example.com", forwards=["run.ended"])
    time.sleep(0.01)
    events.publish_now([events.Event("run.ended", {"run_id": f"r{n}"}) for n in range(2)])
    assert forwarding.forward_events() == 2
    [message] = mail.outbox
    assert message.subject == "2 run.ended records"
    lines = message.body.splitlines()
    assert [json.loads(line)["data"]["run_id"] for line in lines[1:]] == ["r0", "r1"]


@pytest.mark.django_db
def test_events_trimmed_before_they_were_forwarded_are_logged(settings, caplog):
    settings.EVENT_STREAM_MAXLEN = 1  # trimmed at once (MAXLEN ~ trims whole nodes: publish many)
    NotificationChannel.objects.create(name="dead", kind="webhook", target=DEAD, forwards=["run.ended"])
    time.sleep(0.01)
    events.publish_now([events.Event("run.ended", {"run_id": "r0"})])
    assert forwarding.forward_events() == 1
    assert "trimmed" not in caplog.text
    for n in range(3):
        events.publish_now([events.Event("run.ended", {"run_id": f"r{n}{m}"}) for m in range(200)])
    forwarding.forward_events()
    assert caplog.text.count("may have been trimmed before they were forwarded") == 1
    # A channel's first pass, too: trimmed since it was created, before it read anything.
    NotificationChannel.objects.create(name="late", kind="webhook", target=DEAD, forwards=["run.ended"])
    time.sleep(0.01)
    for n in range(3):
        events.publish_now([events.Event("run.ended", {"run_id": f"s{n}{m}"}) for m in range(200)])
    forwarding.forward_events()
    assert "forwarding to late (JSON webhook): run.ended events after" in caplog.text


@pytest.mark.django_db
def test_a_receiver_that_fails_twice_is_retried_with_backoff(eager):
    with http_receiver(statuses=[500, 503]) as (url, received):
        channel = NotificationChannel.objects.create(name="hook", kind="webhook", target=url)
        assert services.notify(Notification(topic="alert.opened", subject="s", text="t")) == 1
        delivery = Delivery.objects.get()
        assert (delivery.status, delivery.attempts, "500" in delivery.last_error) == ("pending", 1, True)
        assert sending.due_deliveries() == []  # waiting its backoff
        retries = [delivery.next_attempt_at]
        for _ in range(2):
            time.sleep(max(0, (Delivery.objects.get().next_attempt_at - timezone.now()).total_seconds()) + 0.05)
            sending.send(sending.due_deliveries())
            delivery = Delivery.objects.get()
            retries.append(delivery.next_attempt_at)
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("delivered", 3, "")
    assert [sending.backoff(n) for n in (1, 2, 3)] == [timedelta(seconds=s) for s in (1, 2, 4)]
    # Each failure's retry is its backoff after it, and it came no sooner than the retry before.
    assert delivery.created_at + timedelta(seconds=1) <= retries[0]
    assert retries[0] + timedelta(seconds=2) <= retries[1]
    assert len(received) == 3 and len({request["body"] for request in received}) == 1
    verified(channel, received[-1])


@pytest.mark.django_db
def test_retry_failed_resends_exactly_the_failed_ones(eager, admin_client, settings):
    settings.DELIVERY_MAX_ATTEMPTS = 1
    with http_receiver(statuses=[500]) as (url, received), http_receiver() as (other_url, other_received):
        flaky = NotificationChannel.objects.create(name="flaky", kind="webhook", target=url)
        steady = NotificationChannel.objects.create(name="steady", kind="webhook", target=other_url)
        for n in range(2):  # the first fails, the second finds the channel down: both out of their one attempt
            services.notify(Notification(topic="alert.opened", subject=f"s{n}", text="t"), [flaky])
        services.notify(Notification(topic="alert.opened", subject="ok", text="t"), [steady])
        assert sorted(Delivery.objects.values_list("status", flat=True)) == ["delivered", "failed", "failed"]
        page = admin_client.post(
            "/admin/notifications/delivery/",
            {"action": "retry", "_selected_action": list(Delivery.objects.values_list("pk", flat=True))},
            follow=True,
        )
        assert "2 failed deliveries sent again." in page.content.decode()
    assert len(received) == 3 and len(other_received) == 1  # the two failed ones, at once; not the delivered one
    assert list(Delivery.objects.values_list("status", flat=True)) == ["delivered"] * 3


@pytest.mark.django_db
def test_a_dead_receiver_costs_one_try_per_backoff(settings):
    settings.DELIVERY_MAX_ATTEMPTS = 2
    dead = NotificationChannel.objects.create(name="dead", kind="webhook", target=DEAD)
    for n in range(5):  # queued for a worker there is none of: this test sends them itself
        services.notify(Notification(topic="alert.opened", subject=f"s{n}", text="t"), [dead])
    ids = list(Delivery.objects.order_by("pk").values_list("pk", flat=True))
    assert sending.send(ids) == {"delivered": 0, "tried": 1, "postponed": 4, "failed": 0}
    tried = Delivery.objects.get(pk=ids[0])
    assert tried.attempts == 1 and "ConnectError" in tried.last_error
    waiting = Delivery.objects.exclude(pk=ids[0])
    assert all(d.last_error.startswith("not tried: the channel is down (ConnectError") for d in waiting)
    assert {d.next_attempt_at for d in waiting} == {tried.next_attempt_at}  # when the channel is tried again
    Delivery.objects.update(next_attempt_at=timezone.now())  # due, but the channel is still down: no try
    assert sending.send(ids) == {"delivered": 0, "tried": 0, "postponed": 5, "failed": 5}
    assert set(Delivery.objects.values_list("status", flat=True)) == {"failed"}


@pytest.mark.django_db
def test_records_forwarded_to_a_channel_that_is_down_wait_for_its_backoff_untried():
    """Neither read nor written again until the channel is tried again: forwarding to a dead
    receiver costs the rows' insert, no more, until its backoff ends."""
    NotificationChannel.objects.create(name="dead", kind="webhook", target=DEAD, forwards=["run.ended"])
    time.sleep(0.01)
    events.publish_now([events.Event("run.ended", {"run_id": "r0"})])
    assert forwarding.forward_events() == 1  # queued for a worker there is none of: sent here
    first = Delivery.objects.get()
    assert sending.send([first.pk])["tried"] == 1  # fails: the channel is down for 1 s
    events.publish_now([events.Event("run.ended", {"run_id": f"r{n}"}) for n in range(1, 4)])
    assert forwarding.forward_events() == 0  # written, not queued
    first.refresh_from_db()
    waiting = Delivery.objects.exclude(pk=first.pk).get()  # the three, in one delivery
    assert waiting.records == 3 and sending.due_deliveries() == []
    assert (waiting.attempts, waiting.next_attempt_at) == (0, first.next_attempt_at)
    assert waiting.last_error.startswith("not tried: the channel is down (ConnectError")
    time.sleep(max(0, (first.next_attempt_at - timezone.now()).total_seconds()) + 0.05)
    assert len(sending.due_deliveries()) == 2  # the backoff is over: the sweep tries them


@pytest.mark.django_db
def test_records_forwarded_while_a_worker_sends_to_the_channel_are_left_for_the_retry_sweep():
    channel = NotificationChannel.objects.create(name="slow", kind="webhook", target=DEAD, forwards=["run.ended"])
    time.sleep(0.01)
    get_redis().set(sending.CHANNEL_TRYING.format(channel=channel.pk), "1")  # a try is in flight
    events.publish_now([events.Event("run.ended", {"run_id": "r0"})])
    assert forwarding.forward_events() == 0  # not queued: a task would only find the channel busy
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("pending", 0, "")
    assert sending.due_deliveries() == [delivery.pk]  # due now: the sweep sends it


@pytest.mark.django_db
def test_one_worker_at_a_time_sends_to_a_channel(eager):
    with http_receiver() as (url, received):
        channel = NotificationChannel.objects.create(name="hook", kind="webhook", target=url)
        trying = sending.CHANNEL_TRYING.format(channel=channel.pk)
        get_redis().set(trying, "1")  # another worker is sending to it
        services.notify(Notification(topic="alert.opened", subject="s", text="t"))
        waiting = Delivery.objects.get()  # left as it was (no write), for the next retry sweep
        assert (waiting.status, waiting.attempts, waiting.last_error, received) == ("pending", 0, "", [])
        assert sending.due_deliveries() == [waiting.pk]
        get_redis().delete(trying)
        assert sending.send(sending.due_deliveries())["delivered"] == 1
    assert len(received) == 1 and not get_redis().exists(trying)


@pytest.mark.django_db
def test_an_unexpected_failure_fails_the_delivery_instead_of_blocking_the_channel(settings, caplog):
    settings.DELIVERY_MAX_ATTEMPTS = 1
    with http_receiver() as (url, received):
        channel = NotificationChannel.objects.create(name="hook", kind="webhook", target=url)
        broken = Delivery.objects.create(channel=channel, topic="x", notification={"no such field": 1})
        fine = Delivery.objects.create(channel=channel, topic="x", notification={"topic": "x", "subject": "s", "text": "t"})
        assert sending.send([broken.pk])["failed"] == 1
        get_redis().delete(sending.CHANNEL_DOWN.format(channel=channel.pk))  # its backoff over
        assert sending.send([fine.pk])["delivered"] == 1
    broken.refresh_from_db()
    assert broken.status == "failed" and broken.last_error.startswith("TypeError")
    assert "failed unexpectedly" in caplog.text and len(received) == 1


@pytest.mark.django_db
def test_a_channel_saved_in_the_admin_forwards_from_then_on(eager, admin_client):
    events.publish_now([events.Event("run.ended", {"run_id": "old"})])
    with http_receiver() as (url, received):
        form = {"name": "sink", "kind": "webhook", "target": url, "topics": "[]", "forwards": '["run.ended"]',
                "secret": "s", "enabled": "on"}  # fmt: skip
        assert admin_client.post("/admin/notifications/notificationchannel/add/", form).status_code == 302
        channel = NotificationChannel.objects.get()
        channel.created_at -= timedelta(days=1)  # as if it had been there long before it forwarded anything
        channel.save()
        events.publish_now([events.Event("run.ended", {"run_id": "new"})])
        assert forwarding.forward_events() == 1
        assert not channel.hears("approval.requested")  # a forwarding channel hears no notifications unless listed
    assert [[record["data"]["run_id"] for record in json.loads(r["body"])["records"]] for r in received] == [["new"]]


@pytest.mark.django_db
def test_a_forwarded_type_with_a_colon_keeps_its_place_when_the_channel_is_saved_again(eager, admin_client):
    with http_receiver() as (url, received):
        form = {"name": "sink", "kind": "webhook", "target": url, "topics": "[]", "forwards": '["build:done"]',
                "secret": "s", "enabled": "on"}  # fmt: skip
        assert admin_client.post("/admin/notifications/notificationchannel/add/", form).status_code == 302
        channel = NotificationChannel.objects.get()
        events.publish_now([events.Event("build:done", {"n": 1})])
        # Saved again before the next forwarding pass: the type's place is kept, not read as "done" and reset.
        change = f"/admin/notifications/notificationchannel/{channel.pk}/change/"
        assert admin_client.post(change, {**form, "name": "sink-renamed"}).status_code == 302
        assert forwarding.forward_events() == 1
    assert [[record["data"]["n"] for record in json.loads(r["body"])["records"]] for r in received] == [[1]]
