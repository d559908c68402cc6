"""The event bus: typed events in Redis Streams, one stream per event type, published only after
the database transaction that caused them commits (never for work that rolled back).

An entry holds `event_type`, `timestamp` (ISO 8601), `source` and `data` (JSON): the shape of
the SDK's StreamEvent. Streams are capped by an approximate MAXLEN (EVENT_STREAM_MAXLEN).
The database stays the record: when Redis is down an event is logged and dropped, the request
that caused it still succeeds.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from redis.exceptions import ResponseError, WatchError

from core import quotas
from core.authentication import KeyCheck, StaleKey
from core.fastpaths.pipelined_redis import Script
from core.redis import get_pipelined_redis, get_redis
from core.streams import NEW_TYPES_KEY, STREAM_PREFIX, TYPES_KEY, stream_key

logger = logging.getLogger(__name__)

PUBLISHED_KEY = "telemetry:events-published"  # hash: event type -> events published (for /metrics)
ANNOUNCED_PREFIX = "telemetry:announced:"  # + hour number: what publish_once published that hour
ANNOUNCED_HOURS = 2  # how long publish_once remembers it: the sweeps look back one hour at most
EVENT_TYPE = r"[A-Za-z0-9_.:-]{1,100}"
# The server's own event types: agents read them but may not publish them, nor any other type in
# their namespaces, in any case (a type the server adds later must not be one an agent already has).
SERVER_EVENT_TYPES = frozenset(
    {
        "run.started",
        "run.ended",
        "agent.started",
        "agent.heartbeat",
        "agent.recovered",
        "agent.stopped",
        "agent.stale",
        "signal.sent",
        "approval.requested",
        "approval.decided",
        "approval.expired",
        "approval.cancelled",
        "alert.opened",
        "alert.closed",
    }
)
RESERVED_PREFIXES = tuple(sorted({event_type.split(".")[0] + "." for event_type in SERVER_EVENT_TYPES}))
ENTRY_FIELDS = ("event_type", "timestamp", "source", "data")
STALE_KEY = "STALE_KEY the agent key changed since this process read it"


def valid_event_type(event_type: str) -> bool:
    return re.fullmatch(EVENT_TYPE, event_type) is not None


def reserved(event_type: str) -> bool:
    """Whether `event_type` is the server's to publish (see SERVER_EVENT_TYPES)."""
    return event_type.lower().startswith(RESERVED_PREFIXES)


@dataclass
class Event:
    event_type: str
    data: dict[str, Any]
    source: str = "server"
    timestamp: str = field(default_factory=lambda: timezone.now().isoformat())

    def fields(self) -> tuple[str, ...]:
        """The stream entry, as XADD takes it: field, value, field, value..."""
        return tuple(value for pair in zip(ENTRY_FIELDS, self.values(), strict=True) for value in pair)

    def values(self) -> tuple[str, str, str, str]:
        """The stream entry's values, in the order of ENTRY_FIELDS."""
        return self.event_type, self.timestamp, self.source, json.dumps(self.data, default=_json_default)


def _json_default(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime | date) else str(value)


def publish_now(events: Iterable[Event]) -> list[str]:
    """XADD each event to its stream in one round trip; returns the stream entry ids."""
    events = list(events)
    if not events:
        return []
    client = get_redis()
    pipe = client.pipeline(transaction=False)
    _queue_publish(pipe, events)
    added_types, *replies = pipe.execute()
    announce_new_types_now(client, added_types)
    return [entry_id.decode() for entry_id in replies[: len(events)]]


def announce_new_types_now(client, added_types: int) -> None:
    """After a pipeline that published (queue_publish): wake the live feed if the types were new."""
    if added_types:
        client.xadd(NEW_TYPES_KEY, {"count": added_types}, maxlen=100, approximate=True)


# The end of an EventScript, what _queue_publish and announce_new_types_now do from a pipeline:
# after the script's own ARGV come each event's type, timestamp, source and data, the streams'
# cap, the number of events, and the key check (entry and SHA-1, or two empty strings). The keys
# it reads and writes are named here, not passed in KEYS: fewer arguments to pack, and the server
# is not a cluster.
_EVENT_SCRIPT_LUA = f"""
local key_entry, key_sha1 = ARGV[#ARGV - 1], ARGV[#ARGV]
if key_entry ~= '' and redis.sha1hex(redis.call('GET', key_entry) or '') ~= key_sha1 then
  return redis.error_reply('{STALE_KEY}')
end
local answer = run()
if type(answer) == 'table' and answer.err then
  return answer
end
local count, cap = tonumber(ARGV[#ARGV - 2]), ARGV[#ARGV - 3]
local added = 0
for first = #ARGV - 3 - 4 * count, #ARGV - 4, 4 do
  local event_type = ARGV[first]
  added = added + redis.call('SADD', '{TYPES_KEY}', event_type)
  redis.call('XADD', '{STREAM_PREFIX}' .. event_type, 'MAXLEN', '~', cap, '*', 'event_type', event_type,
    'timestamp', ARGV[first + 1], 'source', ARGV[first + 2], 'data', ARGV[first + 3])
  redis.call('HINCRBY', '{PUBLISHED_KEY}', event_type, 1)
end
if added > 0 then
  redis.call('XADD', '{NEW_TYPES_KEY}', 'MAXLEN', '~', 100, '*', 'count', added)
end
return answer
"""


class EventScript(Script):
    """A Lua script that publishes events in its own round trip, atomically with its work: one
    EVALSHA with few arguments, where a pipeline of the work and the publication packs and parses a
    dozen commands in Python. `body` reads its own ARGV from the first (not through #ARGV, which
    counts the events') and returns the script's answer.

    With a key check (core.authentication.remembered_key), the script first makes sure the key's
    Redis entry is the one this process knows, and otherwise raises StaleKey, having done nothing."""

    def __init__(self, body: str):
        super().__init__(f"local function run()\n{body}\nend\n{_EVENT_SCRIPT_LUA}", get_pipelined_redis)

    async def __call__(self, keys: list[str], args: list, events: list[Event], key_check: KeyCheck | None = None) -> Any:
        published = [value for event in events for value in event.values()]
        check = [key_check.entry, key_check.sha1] if key_check else ["", ""]
        try:
            return await super().__call__(keys, [*args, *published, settings.EVENT_STREAM_MAXLEN, len(events), *check])
        except ResponseError as exc:
            if str(exc) == STALE_KEY:
                raise StaleKey from None
            if (bound := quotas.bound_of(exc)) is not None:
                raise quotas.QuotaExceeded(bound) from None
            raise


_PUBLISH = EventScript("return nil")


async def publish_async(*events: Event) -> None:
    """publish_now for async code (no transaction to wait for: call it after writing)."""
    await _PUBLISH(keys=[], args=[], events=list(events))


def queue_publish(pipe, events: list[Event]) -> int:
    """Queue the publication of `events` on a pipeline of other commands (one round trip for
    both); returns the index of the result to pass to announce_new_types_now."""
    index = len(pipe)
    _queue_publish(pipe, events)
    return index


def _queue_publish(pipe, events: list[Event]) -> None:
    cap = settings.EVENT_STREAM_MAXLEN
    # The type is registered before its entries are added: the live feed relies on that order.
    pipe.sadd(TYPES_KEY, *{event.event_type for event in events})
    for event in events:
        # execute_command, not pipe.xadd(): the same XADD for a third of the Python time
        pipe.execute_command("XADD", stream_key(event.event_type), "MAXLEN", "~", cap, "*", *event.fields())
    for event_type, count in Counter(event.event_type for event in events).items():
        pipe.execute_command("HINCRBY", PUBLISHED_KEY, event_type, count)


CREATED_TYPES_PREFIX = "telemetry:quota:created-types:"  # + key prefix: the event types it created

# KEYS: the set of types the key created. ARGV: the event's type, timestamp, source, data, the
# streams' cap, STREAM_NEW_TYPES_PER_KEY (0: none). A type new to the server counts against the
# key (refused at the bound, nothing written); one it created before, or that exists, does not.
_PUBLISH_FOR_KEY = f"""
local event_type, cap = ARGV[1], tonumber(ARGV[6])
if cap > 0 and redis.call('SISMEMBER', '{TYPES_KEY}', event_type) == 0
    and redis.call('SISMEMBER', KEYS[1], event_type) == 0 then
  if redis.call('SCARD', KEYS[1]) >= cap then
    {quotas.lua_refuse("'new_event_types'")}
  end
  redis.call('SADD', KEYS[1], event_type)
end
local added = redis.call('SADD', '{TYPES_KEY}', event_type)
local id = redis.call('XADD', '{STREAM_PREFIX}' .. event_type, 'MAXLEN', '~', ARGV[5], '*', 'event_type', event_type,
  'timestamp', ARGV[2], 'source', ARGV[3], 'data', ARGV[4])
redis.call('HINCRBY', '{PUBLISHED_KEY}', event_type, 1)
if added > 0 then
  redis.call('XADD', '{NEW_TYPES_KEY}', 'MAXLEN', '~', 100, '*', 'count', added)
end
return id
"""


def publish_for_key(event: Event, key_prefix: str, new_types_cap: int) -> str:
    """Publish one event for an agent key that may create `new_types_cap` event types (0: any
    number); its stream entry id. QuotaExceeded, and nothing published, past that."""
    client = get_redis()
    args = [*event.values(), settings.EVENT_STREAM_MAXLEN, new_types_cap]
    try:
        entry_id = client.eval(_PUBLISH_FOR_KEY, 1, CREATED_TYPES_PREFIX + key_prefix, *args)
    except ResponseError as exc:
        if (bound := quotas.bound_of(exc)) is not None:
            raise quotas.QuotaExceeded(bound) from None
        raise
    return entry_id.decode()


def publish_once(key: str, event: Event) -> bool:
    """publish_now, unless an event was published under `key` within the last hour or two;
    whether this call published it. `key` is recorded in the Redis transaction that adds the event,
    so of the callers racing to publish it (a sweep finishing what a killed process left, say)
    one does, and a process killed before the transaction leaves it unrecorded. The record is
    one hash per hour, kept ANNOUNCED_HOURS (a key per event would grow Redis with the traffic)."""
    client = get_redis()
    hours = _announced_hours()
    with client.pipeline() as pipe:
        while True:
            try:
                pipe.watch(*hours)
                if any(pipe.hexists(hour, key) for hour in hours):
                    return False
                pipe.multi()
                pipe.hset(hours[0], key, 1)
                pipe.expire(hours[0], ANNOUNCED_HOURS * 3600)
                _queue_publish(pipe, [event])
                added_types = pipe.execute()[2]
                break
            except WatchError:
                continue  # something else was announced this hour meanwhile: look again
    announce_new_types_now(client, added_types)
    return True


def announced(keys: list[str]) -> list[bool]:
    """Whether publish_once published an event under each of `keys` (in the hours it remembers)."""
    pipe = get_redis().pipeline(transaction=False)
    for hour in _announced_hours():
        pipe.hmget(hour, keys)
    by_hour = pipe.execute() if keys else []
    return [any(flags[index] is not None for flags in by_hour) for index in range(len(keys))]


def _announced_hours() -> list[str]:
    """The hashes publish_once records in: this hour's first, then the one before."""
    hour = int(time.time() // 3600)
    return [f"{ANNOUNCED_PREFIX}{hour - back}" for back in range(ANNOUNCED_HOURS)]


def published_counts() -> dict[str, int]:
    """How many events of each type were published (since Redis last lost its data)."""
    return {event_type.decode(): int(count) for event_type, count in get_redis().hgetall(PUBLISHED_KEY).items()}


def publish(*events: Event) -> None:
    """Publish once the current transaction commits (at once outside a transaction; inside
    publishing_after, when its work is done)."""
    if events:
        transaction.on_commit(lambda: _publish_logged(events))


# The events held back by publishing_after (asgiref carries the list to the threads of its work).
_held: contextvars.ContextVar[list[Event] | None] = contextvars.ContextVar("events_held", default=None)
T = TypeVar("T")


async def publishing_after(work: Awaitable[T]) -> T:
    """Await `work` (a request's sync view), holding back the events it publishes, committed, and
    then publish them in one round trip on this event loop's pipelined connection: its thread then
    makes no Redis round trip of its own (a pipeline from a thread was ~28% of a single write), and
    the round trips of concurrent requests share the connection's writes. The events are published
    whatever becomes of `work` once they are committed, even if the request is cancelled."""
    held: list[Event] = []
    token = _held.set(held)
    try:
        return await work
    finally:
        _held.reset(token)
        if held:
            await asyncio.shield(_publish_held(held))


async def _publish_held(events: list[Event]) -> None:
    try:
        await _PUBLISH(keys=[], args=[], events=events)
    except Exception:
        logger.exception("event bus: could not publish %d event(s); the database has them", len(events))


def _publish_logged(events: Iterable[Event]) -> None:
    held = _held.get()
    if held is not None:
        held.extend(events)
        return
    try:
        publish_now(events)
    except Exception:
        logger.exception("event bus: could not publish %d event(s); the database has them", len(list(events)))
