"""The event bus's streams, read side: one Redis stream per event type (written by core.events),
their keys, ids and entries as the API returns them.
"""

from __future__ import annotations

import json
from typing import Any

from core.redis import get_async_blocking_redis, get_async_redis, get_redis

STREAM_PREFIX = "telemetry:stream:"
# The set of event types that have a stream, and a stream that gets an entry when a type is new:
# the live feed blocks on it too, so a new type's first event wakes it (streaming.feed).
TYPES_KEY = "telemetry:stream-types"
NEW_TYPES_KEY = "telemetry:stream-types:new"


def stream_key(event_type: str) -> str:
    return f"{STREAM_PREFIX}{event_type}"


StreamId = tuple[int, int]  # orders as Redis orders stream ids


def parse_stream_id(raw: str | bytes) -> StreamId:
    """A stream id `ms-seq` (or `ms`, meaning all of that millisecond's entries before it)."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq) if seq else 0


def format_stream_id(entry_id: StreamId) -> str:
    return f"{entry_id[0]}-{entry_id[1]}"


def decode(event_type: str, entry_id: bytes, fields: dict[bytes, bytes]) -> dict[str, Any]:
    """A stream entry as the API returns it (the SDK's StreamEvent)."""
    entry = {key.decode(): value.decode() for key, value in fields.items()}
    return {
        "event_id": entry_id.decode(),
        "event_type": entry.get("event_type", event_type),
        "timestamp": entry.get("timestamp"),
        "source": entry.get("source"),
        "data": json.loads(entry.get("data") or "{}"),
    }


def event_types() -> list[str]:
    """The event types that have a stream now."""
    return sorted(member.decode() for member in get_redis().smembers(TYPES_KEY))


def recent(event_type: str, count: int, start: str = "-", end: str = "+") -> list[dict[str, Any]]:
    """The last `count` events between the ids `start` and `end`, oldest first."""
    entries = get_redis().xrevrange(stream_key(event_type), max=end, min=start, count=count)
    return [decode(event_type, entry_id, fields) for entry_id, fields in reversed(entries)]


def info(event_type: str) -> dict[str, Any]:
    client = get_redis()
    key = stream_key(event_type)
    if not client.exists(key):
        return {"event_type": event_type, "length": 0, "first_event_id": None, "last_event_id": None}
    raw = client.xinfo_stream(key)
    first, last = raw.get("first-entry"), raw.get("last-entry")
    return {
        "event_type": event_type,
        "length": raw["length"],
        "first_event_id": first[0].decode() if first else None,
        "last_event_id": last[0].decode() if last else None,
    }


def trim(event_type: str, max_length: int) -> int:
    """Keep only the newest `max_length` events (exactly); returns how many were removed."""
    return get_redis().xtrim(stream_key(event_type), maxlen=max_length, approximate=False)


def delete(event_type: str) -> bool:
    pipe = get_redis().pipeline(transaction=False)
    pipe.srem(TYPES_KEY, event_type)
    pipe.delete(stream_key(event_type))
    return bool(pipe.execute()[-1])


async def read(after: dict[str, str], count: int, block_ms: int | None) -> list[dict[str, Any]]:
    """Events after the given ids of each type (XREAD), waiting up to `block_ms` for the first."""
    positions = {stream_key(event_type): last_id for event_type, last_id in after.items()}
    client = get_async_redis() if block_ms is None else get_async_blocking_redis()
    answer = await client.xread(positions, count=count, block=block_ms)
    return [
        decode(key.decode().removeprefix(STREAM_PREFIX), entry_id, fields)
        for key, entries in answer or []
        for entry_id, fields in entries
    ]
