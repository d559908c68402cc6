"""The event bus on the real Redis: after commit only, capped, one stream per type."""

import json

import pytest
from django.db import transaction

from core import events, streams
from core.redis import get_redis


def entries(event_type: str) -> list[dict]:
    return [
        {key.decode(): value.decode() for key, value in fields.items()}
        for _, fields in get_redis().xrange(streams.stream_key(event_type))
    ]


@pytest.mark.django_db(transaction=True)
def test_events_are_published_only_after_the_transaction_commits():
    with transaction.atomic():
        events.publish(events.Event("demo.happened", {"n": 1}))
        assert entries("demo.happened") == []
    (entry,) = entries("demo.happened")
    assert entry["event_type"] == "demo.happened" and entry["source"] == "server"
    assert json.loads(entry["data"]) == {"n": 1} and entry["timestamp"]


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_publishes_nothing():
    with pytest.raises(RuntimeError), transaction.atomic():
        events.publish(events.Event("demo.happened", {"n": 1}))
        raise RuntimeError("rolled back")
    assert entries("demo.happened") == []


def test_streams_are_capped_approximately(settings):
    settings.EVENT_STREAM_MAXLEN = 100
    for start in range(0, 2000, 500):
        events.publish_now(events.Event("demo.many", {"n": n}) for n in range(start, start + 500))
    length = get_redis().xlen(streams.stream_key("demo.many"))
    assert 100 <= length < 400  # trimmed whole nodes at a time, never below the cap


@pytest.mark.django_db(transaction=True)
def test_redis_down_loses_the_event_not_the_request(settings, caplog):
    from operations.embedded_redis import free_port

    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{free_port()}/0"}}
    events.publish(events.Event("demo.happened", {"n": 1}))  # autocommit: published (or not) at once
    assert "could not publish 1 event" in caplog.text
