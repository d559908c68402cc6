"""The SDK's EventStreamer against the real server and Redis."""

import threading

import pytest
from telemetry_client import EventStreamer, StreamEvent, TelemetryClient, TelemetryConfig

from core.redis import get_redis
from tests.conftest import make_key


@pytest.fixture
def streamer(live_asgi, transactional_db, tmp_path):
    """An EventStreamer on the live server, acting with a new key of `name` and `scopes`."""

    def make(name: str = "alpha", scopes: list[str] | None = None) -> EventStreamer:
        key = make_key(name, scopes=scopes)[1]
        return EventStreamer(TelemetryClient(TelemetryConfig(api_url=live_asgi, api_key=key, spool_dir=tmp_path / name)))

    return make


def test_publish_read_inspect_trim_and_delete(streamer):
    agent = streamer()
    ids = [agent.publish_event("deploys", {"n": n}) for n in range(5)]
    assert all(ids) and ids == sorted(ids)
    recent = agent.get_recent_events("deploys", count=2)
    assert [e.event_id for e in recent] == ids[3:] and recent[-1].data == {"n": 4} and recent[-1].source == "alpha"
    assert recent[-1].timestamp.tzinfo is not None
    assert agent.get_stream_info("deploys")["length"] == 5
    assert agent.trim_stream("deploys", 2) == 0  # an agent key has no streams:admin: refused, logged
    admin = streamer("ops", ["streams:read", "streams:admin"])
    assert admin.trim_stream("deploys", 2) == 3
    assert admin.delete_stream("deploys") is True
    assert agent.get_stream_info("deploys")["length"] == 0
    assert agent.publish_event("run.ended", {}) == ""  # the server's own types are not for agents


def test_consume_yields_what_is_there_then_stops(streamer):
    agent = streamer()
    for n in range(5):
        agent.publish_event("deploys", {"n": n})
    agent.publish_event("builds", {"n": 99})
    events = list(agent.consume_events(["deploys", "builds"], count=2, start_id="0-0"))
    assert sorted(e.data["n"] for e in events) == [0, 1, 2, 3, 4, 99]
    assert {e.event_type for e in list(agent.consume_events(start_id="0-0"))} == {"deploys", "builds"}


def test_a_blocking_consume_wakes_when_an_event_is_published(streamer):
    agent = streamer()
    publisher = threading.Timer(0.5, lambda: agent.publish_event("deploys", {"late": True}))
    publisher.start()
    # Published after the wait began: had the wait expired first, the iterator would be empty.
    first = next(iter(agent.consume_events(["deploys"], block_ms=20_000)))
    publisher.join()
    assert first.data == {"late": True}


def test_stream_events_round_trip_from_raw_redis_entries(streamer):
    agent = streamer()
    event_id = agent.publish_event("deploys", {"n": 1}, source="ci")  # sent, and ignored: the key says who
    ((raw_id, fields),) = get_redis().xrange("telemetry:stream:deploys")
    event = StreamEvent.from_redis_entry(raw_id.decode(), fields)
    assert (event.event_id, event.event_type, event.data, event.source) == (event_id, "deploys", {"n": 1}, "alpha")
    assert StreamEvent.from_dict(event.to_dict()) == event
