"""Which optional parts work right now: each is tried, not assumed."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.utils import timezone

from core import streams
from core.redis import get_redis
from core.tasks import BACKGROUND_TICK_KEY

AVAILABLE, DEGRADED, UNAVAILABLE = "available", "degraded", "unavailable"


@dataclass
class FeatureInfo:
    name: str
    status: str  # available, degraded or unavailable
    description: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _try(name: str, description: str, check) -> FeatureInfo:
    """`check()` returns (status, detail); an exception means unavailable, with its reason."""
    try:
        status, detail = check()
    except Exception as exc:  # noqa: BLE001 - any failure makes the feature unavailable
        status, detail = UNAVAILABLE, f"{type(exc).__name__}: {exc}"
    return FeatureInfo(name, status, description, detail)


def _database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return AVAILABLE, connection.vendor


def _redis():
    started = time.perf_counter()
    get_redis().ping()
    return AVAILABLE, f"ping {1000 * (time.perf_counter() - started):.1f} ms"


def _streams():
    types = len(streams.event_types())
    return AVAILABLE, f"{types} event types with a stream"


def channel_layer_round_trip(timeout: float = 5.0) -> str:
    """Send a message to a new channel and read it back; says how long that took (raises on failure)."""
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")

    async def round_trip() -> float:
        started = time.perf_counter()
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "features.check"})
        await asyncio.wait_for(layer.receive(channel), timeout)
        return time.perf_counter() - started

    took = async_to_sync(round_trip)()
    return f"{type(layer).__name__}, a message there and back in {1000 * took:.1f} ms"


def _websockets():
    return AVAILABLE, channel_layer_round_trip()


def background_late_after() -> float:
    """Seconds without a tick after which worker and beat count as late: four ticks, at least a minute."""
    return max(60.0, 4 * settings.WORKER_TICK_SECONDS)


def tick_age() -> float | None:
    """Seconds since the worker last ran the tick beat schedules (None: never)."""
    tick = get_redis().get(BACKGROUND_TICK_KEY)
    return None if tick is None else timezone.now().timestamp() - float(tick)


def _background():
    age = tick_age()
    if age is None:
        return UNAVAILABLE, "never ticked: start the Celery worker and beat (make run does)"
    return (AVAILABLE if age < background_late_after() else DEGRADED), f"last tick {age:.0f} s ago"


def features() -> list[FeatureInfo]:
    return [
        _try("database", "runs, usage, feedback, approvals, the agent registry", _database),
        _try("redis", "heartbeats, signals, wake-ups, cache, Celery broker", _redis),
        _try("streams", "Redis Streams of events (the streams API, the live feed)", _streams),
        _try("websockets", "the live feed at /ws/live/ (channels-redis)", _websockets),
        _try("worker_and_beat", "stale-agent sweeps, approval expiry, notifications, retention", _background),
    ]
