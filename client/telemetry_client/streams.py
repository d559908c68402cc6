"""EventStreamer and StreamEvent: the event-stream API, over the server's streams API.

These are questions to the server (telemetry_client.api): a failed call is logged and returns
an empty answer ("", [], {} or False).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from telemetry_client.api import ServerApi
from telemetry_client.client import TelemetryClient
from telemetry_client.transport import Ask, Steps


@dataclass
class StreamEvent:
    """An event in a Redis Stream: its stream id, type, time, data and source."""

    event_id: str
    event_type: str
    timestamp: datetime
    data: dict[str, Any] = field(default_factory=dict)
    source: str = "attune"

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "timestamp": self.timestamp.isoformat(),
            "data": self.data,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StreamEvent:
        stamp = raw.get("timestamp")
        return cls(
            event_id=raw["event_id"],
            event_type=raw.get("event_type", ""),
            timestamp=datetime.fromisoformat(stamp) if stamp else datetime.now(timezone.utc),
            data=raw.get("data") or {},
            source=raw.get("source") or "",
        )

    @classmethod
    def from_redis_entry(cls, event_id: str, entry_data: dict[bytes, bytes]) -> StreamEvent:
        """From a raw Redis Stream entry (bytes field names and values)."""
        entry = {key.decode(): value.decode() for key, value in entry_data.items()}
        return cls.from_dict({**entry, "event_id": event_id, "data": json.loads(entry.get("data") or "{}")})


class EventStreamer:
    """Publish, read and follow the server's event streams. `memory` is the TelemetryClient
    whose server and key to use (None: the process's client)."""

    def __init__(self, memory: TelemetryClient | None = None):
        self._api = ServerApi(memory, "/api/v1/streams")

    def publish_event(self, event_type: str, data: dict[str, Any], source: str = "attune") -> str:
        """Publish an event; its stream id, or "" when the server could not be reached. The server
        records the key's name as the event's source: `source` is sent and ignored."""
        return self._api.run(self._publishing(event_type, data, source))

    async def apublish_event(self, event_type: str, data: dict[str, Any], source: str = "attune") -> str:
        return await self._api.arun(self._publishing(event_type, data, source))

    def _publishing(self, event_type: str, data: dict[str, Any], source: str) -> Steps[str]:
        answer: dict[str, str] = yield Ask("POST", f"/{event_type}", {"data": data, "source": source}, empty={})
        return answer.get("event_id", "")

    def consume_events(
        self, event_types: list[str] | None = None, block_ms: int | None = None, count: int = 10, start_id: str = "$"
    ) -> Iterator[StreamEvent]:
        """Events after `start_id` ("$": from now on) of the given types (default: every type
        that has a stream), in batches of `count`. Without `block_ms` it yields what is there
        and stops; with it, it keeps waiting and stops once `block_ms` passes with nothing new.
        The server wakes the moment an event arrives; there is no polling."""
        after = {event_type: start_id for event_type in event_types or self._api.run(self._types())}
        while after and (batch := self._api.run(self._next_batch(after, block_ms, count))):
            yield from batch

    async def aconsume_events(
        self, event_types: list[str] | None = None, block_ms: int | None = None, count: int = 10, start_id: str = "$"
    ) -> AsyncIterator[StreamEvent]:
        """`consume_events`, as an async iterator (`async for event in streamer.aconsume_events()`).
        Cancelling the task that iterates ends its wait on the server."""
        if not event_types:
            event_types = await self._api.arun(self._types())
        after = {event_type: start_id for event_type in event_types}
        while after and (batch := await self._api.arun(self._next_batch(after, block_ms, count))):
            for event in batch:
                yield event

    def _types(self) -> Steps[list[str]]:
        answer: dict[str, list[str]] = yield Ask("GET", "", empty={})
        return answer.get("event_types", [])

    def _next_batch(self, after: dict[str, str], block_ms: int | None, count: int) -> Steps[list[StreamEvent]]:
        """The events after `after` (each type's last id, moved on past them); [] when none came."""
        params = {"types": ",".join(after), "after": ",".join(after.values()), "count": count, "block_ms": block_ms or None}
        answer = yield Ask("GET", "/consume", params=params, timeout=(block_ms or 0) / 1000 + 10, empty={})
        after.update(answer.get("after", {}))
        return [StreamEvent.from_dict(raw) for raw in answer.get("events", [])]

    def get_recent_events(self, event_type: str, count: int = 100, start_id: str = "-", end_id: str = "+") -> list[StreamEvent]:
        return self._api.run(self._recent(event_type, count, start_id, end_id))

    async def aget_recent_events(
        self, event_type: str, count: int = 100, start_id: str = "-", end_id: str = "+"
    ) -> list[StreamEvent]:
        return await self._api.arun(self._recent(event_type, count, start_id, end_id))

    def _recent(self, event_type: str, count: int, start_id: str, end_id: str) -> Steps[list[StreamEvent]]:
        found = yield Ask("GET", f"/{event_type}", params={"count": count, "start": start_id, "end": end_id}, empty=[])
        return [StreamEvent.from_dict(raw) for raw in found]

    def get_stream_info(self, event_type: str) -> dict[str, Any]:
        return self._api.run(self._info(event_type))

    async def aget_stream_info(self, event_type: str) -> dict[str, Any]:
        return await self._api.arun(self._info(event_type))

    def _info(self, event_type: str) -> Steps[dict[str, Any]]:
        info: dict[str, Any] = yield Ask("GET", f"/{event_type}/info", empty={})
        return info

    def delete_stream(self, event_type: str) -> bool:
        return self._api.run(self._deleting(event_type))

    async def adelete_stream(self, event_type: str) -> bool:
        return await self._api.arun(self._deleting(event_type))

    def _deleting(self, event_type: str) -> Steps[bool]:
        return bool((yield Ask("DELETE", f"/{event_type}", empty={})).get("deleted", False))

    def trim_stream(self, event_type: str, max_length: int = 1000) -> int:
        return self._api.run(self._trimming(event_type, max_length))

    async def atrim_stream(self, event_type: str, max_length: int = 1000) -> int:
        return await self._api.arun(self._trimming(event_type, max_length))

    def _trimming(self, event_type: str, max_length: int) -> Steps[int]:
        return int((yield Ask("POST", f"/{event_type}/trim", {"max_length": max_length}, empty={})).get("removed", 0))
