"""EventStreamer and StreamEvent: the event-stream API, over the server's streams API.

These are questions to the server (telemetry_client.api): a failed call is logged and returns
an empty answer ("", [], {} or False).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from telemetry_client.api import ServerApi
from telemetry_client.client import TelemetryClient


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
        return self._api.call("POST", f"/{event_type}", {}, body={"data": data, "source": source}).get("event_id", "")

    def consume_events(
        self, event_types: list[str] | None = None, block_ms: int | None = None, count: int = 10, start_id: str = "$"
    ) -> Iterator[StreamEvent]:
        """Events after `start_id` ("$": from now on) of the given types (default: every type
        that has a stream), in batches of `count`. Without `block_ms` it yields what is there
        and stops; with it, it keeps waiting and stops once `block_ms` passes with nothing new.
        The server wakes the moment an event arrives; there is no polling."""
        types = event_types or self._api.call("GET", "", {}).get("event_types", [])
        if not types:
            return
        after = {event_type: start_id for event_type in types}
        while True:
            params = {"types": ",".join(after), "after": ",".join(after.values()), "count": count}
            if block_ms:
                params["block_ms"] = block_ms
            answer = self._api.call("GET", "/consume", {}, timeout=(block_ms or 0) / 1000 + 10, params=params)
            found = answer.get("events", [])
            after.update(answer.get("after", {}))
            yield from (StreamEvent.from_dict(raw) for raw in found)
            if not found:
                return

    def get_recent_events(self, event_type: str, count: int = 100, start_id: str = "-", end_id: str = "+") -> list[StreamEvent]:
        found = self._api.call("GET", f"/{event_type}", [], params={"count": count, "start": start_id, "end": end_id})
        return [StreamEvent.from_dict(raw) for raw in found]

    def get_stream_info(self, event_type: str) -> dict[str, Any]:
        return self._api.call("GET", f"/{event_type}/info", {})

    def delete_stream(self, event_type: str) -> bool:
        return bool(self._api.call("DELETE", f"/{event_type}", {}).get("deleted", False))

    def trim_stream(self, event_type: str, max_length: int = 1000) -> int:
        return int(self._api.call("POST", f"/{event_type}/trim", {}, body={"max_length": max_length}).get("removed", 0))
