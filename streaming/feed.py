"""The live feed of one web process: a single reader tails every event stream and fans each batch
out to this process's websocket clients, so an event costs one Redis read and one JSON encoding
however many clients watch it.

Order and resume: the reader hands out batches that are contiguous in stream-id order across all
streams; once it has handed out a batch up to id W it never hands out an id <= W. Before cutting a
batch at W it waits until Redis's clock has passed W's millisecond (later entries then get larger
ids) and reads once more. A client that connects with `since=S` is therefore served (S, W] from
the streams themselves, W being where the reader stood when the client subscribed, and everything
after W live: no gap and no duplicate.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Protocol

from core import streams
from core.redis import for_event_loop, get_async_blocking_redis, get_async_redis
from core.scopes import permissions_for
from core.streams import StreamId, format_stream_id, parse_stream_id

logger = logging.getLogger(__name__)

MAX_SEQ = 2**64 - 1
READ_COUNT = 1000  # entries per stream per read
BLOCK_MS = 5000  # an idle reader wakes this often anyway (to notice new event types)
FRAME_EVENTS = 500  # events per websocket message at most...
FRAME_BYTES = 256 * 1024  # ...and bytes (clients commonly refuse messages over 1 MiB)
REPLAY_PAGE = 500  # entries per stream a replay reads at a time


def private_to(event_type: str, data) -> frozenset[str] | None:
    """The agents an event is about when only they (and staff) may read it, as the API lets only
    them read its subject: a directed signal (its sender and target), an approval request (its
    agent) and an alert about an approval request (the request's agent). None: any key with
    streams:read may."""
    if not isinstance(data, dict):
        return None
    if event_type.startswith("signal.") and data.get("target_agent"):
        return frozenset(str(data[name]) for name in ("source_agent", "target_agent") if data.get(name))
    if event_type.startswith("approval."):
        return frozenset([str(data.get("agent_id"))])
    if event_type.startswith("alert.") and str(data.get("subject", "")).startswith("approval:"):
        details = data.get("details")
        return frozenset([str(details.get("agent_id") if isinstance(details, dict) else None)])
    return None


@dataclass(frozen=True, slots=True)
class SessionReader:
    """A staff session that may read the streams but not every private event's subject: a directed
    signal needs the permissions behind coordination:read (Can view agent), an approval request's
    events and alerts about one those behind approvals:read (Can view approval request), as the
    API asks for the signals and the requests themselves."""

    signals: bool
    approvals: bool

    def may_read(self, event_type: str) -> bool:
        return self.signals if event_type.startswith("signal.") else self.approvals


def session_reader(has_perms) -> SessionReader | None:
    """The reader for a staff session whose user's `has_perms` answers for its permissions; None
    when it may read every event (staff with both permissions)."""
    reader = SessionReader(
        signals=has_perms(permissions_for("coordination:read")), approvals=has_perms(permissions_for("approvals:read"))
    )
    return None if reader.signals and reader.approvals else reader


async def session_reader_async(user) -> SessionReader | None:
    reader = SessionReader(
        signals=await user.ahas_perms(permissions_for("coordination:read")),
        approvals=await user.ahas_perms(permissions_for("approvals:read")),
    )
    return None if reader.signals and reader.approvals else reader


def may_read(reader, readers: frozenset[str] | None, event_type: str) -> bool:
    """Whether `reader` may read an event of `event_type` private to `readers` (see private_to):
    an agent key acting as one of them, a staff session holding the permission for its kind
    (SessionReader), or None: staff who may read everything."""
    if reader is None or readers is None:
        return True
    if isinstance(reader, SessionReader):
        return reader.may_read(event_type)
    return any(reader.may_act_as(agent) for agent in readers)


@dataclass(frozen=True, slots=True)
class FeedEvent:
    id: StreamId
    event_type: str
    agent: str | None
    readers: frozenset[str] | None
    json: str

    @classmethod
    def from_entry(cls, event_type: str, entry_id: bytes, fields: dict[bytes, bytes]) -> FeedEvent:
        event = streams.decode(event_type, entry_id, fields)
        data = event["data"]
        agent = (data.get("agent_id") or data.get("agent_name")) if isinstance(data, dict) else None
        readers = private_to(event["event_type"], data)
        return cls(parse_stream_id(entry_id), event["event_type"], agent, readers, json.dumps(event, separators=(",", ":")))


@dataclass(frozen=True)
class FeedFilter:
    """Which events a client wants (some types and/or some agents; None: all), and may read
    (`key`, see may_read): an agent key only events not private to other agents, a staff session
    without some permissions (SessionReader) no private events of their kinds, None everything."""

    types: frozenset[str] | None = None
    agents: frozenset[str] | None = None
    key: object | None = None

    def everything(self, public: bool) -> bool:
        """Whether the client wants and may read every event of a batch (`public`: none of its
        events is private to some agents)."""
        return self.types is None and self.agents is None and (public or self.key is None)

    def wants(self, event: FeedEvent) -> bool:
        return (
            (self.types is None or event.event_type in self.types)
            and (self.agents is None or event.agent in self.agents)
            and may_read(self.key, event.readers, event.event_type)
        )


class Subscriber(Protocol):
    filter: FeedFilter
    floor: StreamId  # hand out only events after this id

    def deliver(self, frame: str) -> None:
        """Take a message for the client; must not block (queue it or drop the client)."""


def frames(batch: list[FeedEvent]) -> Iterable[str]:
    """Websocket messages of at most about FRAME_EVENTS events or FRAME_BYTES. Streams number
    their entries independently, so events of different types can share an id: a message always
    holds all of them, and the last id a client got is a complete resume point."""
    chunk: list[str] = []
    size = 0
    for index, event in enumerate(batch):
        chunk.append(event.json)
        size += len(event.json)
        following = batch[index + 1] if index + 1 < len(batch) else None
        if following is None or (following.id != event.id and (len(chunk) >= FRAME_EVENTS or size >= FRAME_BYTES)):
            yield '{"type":"events","events":[' + ",".join(chunk) + "]}"
            chunk, size = [], 0


class Feed:
    """The reader of one event loop and the clients it serves."""

    def __init__(self):
        self.subscribers: set[Subscriber] = set()
        self.handed_out: StreamId = (0, 0)
        self._task: asyncio.Task | None = None
        self._starting = asyncio.Lock()

    async def subscribe(self, subscriber: Subscriber) -> StreamId:
        """Start serving `subscriber`; returns W: it gets every event after W live."""
        async with self._starting:
            if self._task is None:
                self.handed_out = await _now_id()
                self._task = asyncio.create_task(self._read_forever(), name="live-feed")
        self.subscribers.add(subscriber)
        return self.handed_out

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        if not self.subscribers and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _read_forever(self) -> None:
        reader = StreamReader(self.handed_out)
        # A cancelled read may surface as a Redis error rather than CancelledError: stop as soon
        # as this task is no longer the feed's reader, whatever the read raised.
        while self._task is asyncio.current_task():
            try:
                cutoff, batch = await reader.next_batch()
            except Exception:
                if self._task is asyncio.current_task():
                    logger.exception("live feed: reading the event streams failed; retrying in 1 s")
                    await asyncio.sleep(1)
                continue
            if self._task is asyncio.current_task():
                self.handed_out = cutoff
                if batch:
                    self._fan_out(batch)

    def _fan_out(self, batch: list[FeedEvent]) -> None:
        whole: list[str] | None = None
        public = all(event.readers is None for event in batch)
        for subscriber in list(self.subscribers):
            if subscriber.floor < batch[0].id and subscriber.filter.everything(public):
                whole = whole if whole is not None else list(frames(batch))
                chosen_frames = whole
            else:
                chosen = [e for e in batch if e.id > subscriber.floor and subscriber.filter.wants(e)]
                chosen_frames = frames(chosen) if chosen else ()
            for frame in chosen_frames:
                subscriber.deliver(frame)


async def _redis_now_ms(redis) -> int:
    """Redis's clock, which stamps the entry ids, in milliseconds."""
    seconds, micros = await redis.time()
    return seconds * 1000 + micros // 1000


async def _now_id() -> StreamId:
    """The last id Redis could hand out before now: every later entry gets a larger one."""
    return await _redis_now_ms(get_async_redis()) - 1, MAX_SEQ


class StreamReader:
    """Reads every event stream from a position and cuts contiguous batches (see module doc)."""

    def __init__(self, start: StreamId):
        self.start = start
        self.positions: dict[str, StreamId] = {}  # event type -> last id read
        self.new_types_position: StreamId = start
        self.pending: list[FeedEvent] = []

    async def next_batch(self) -> tuple[StreamId, list[FeedEvent]]:
        """The new cutoff and the events up to it, oldest first (may be empty)."""
        redis = get_async_redis()
        if not self.positions:
            await self._learn_types(redis)
        got, full = await self._read(redis, block=not self.pending)
        candidates = self.pending + got
        if candidates:
            last_ms = max(event.id[0] for event in candidates)
            await self._wait_until_after(redis, last_ms)
        # Types are registered before their first entry is added, so after the wait every entry
        # up to last_ms is in a stream we now know of.
        await self._learn_types(redis)
        if not candidates:
            return self.start, []
        more, more_full = await self._read(redis, block=False)
        candidates += more
        # A stream that filled a read may hold more: cut before its unread entries.
        cutoff = min([(last_ms, MAX_SEQ), *(self.positions[t] for t in full | more_full)])
        candidates.sort(key=lambda event: event.id)
        split = next((i for i, event in enumerate(candidates) if event.id > cutoff), len(candidates))
        batch, self.pending = candidates[:split], candidates[split:]
        self.start = cutoff
        return cutoff, batch

    async def _learn_types(self, redis) -> None:
        for event_type in await redis.smembers(streams.TYPES_KEY):
            self.positions.setdefault(event_type.decode(), self.start)

    async def _read(self, redis, block: bool) -> tuple[list[FeedEvent], set[str]]:
        after = {streams.stream_key(t): format_stream_id(position) for t, position in self.positions.items()}
        after[streams.NEW_TYPES_KEY] = format_stream_id(self.new_types_position)
        client = get_async_blocking_redis() if block else redis
        answer = await client.xread(after, count=READ_COUNT, block=BLOCK_MS if block else None)
        got: list[FeedEvent] = []
        full: set[str] = set()
        for key, entries in answer or []:
            key = key.decode()
            if key == streams.NEW_TYPES_KEY:
                self.new_types_position = parse_stream_id(entries[-1][0])
                continue
            event_type = key.removeprefix(streams.STREAM_PREFIX)
            got += (FeedEvent.from_entry(event_type, entry_id, fields) for entry_id, fields in entries)
            self.positions[event_type] = got[-1].id
            if len(entries) == READ_COUNT:
                full.add(event_type)
        return got, full

    @staticmethod
    async def _wait_until_after(redis, ms: int) -> None:
        while (now_ms := await _redis_now_ms(redis)) <= ms:
            await asyncio.sleep((ms - now_ms + 1) / 1000)


async def replay(
    types: Iterable[str] | None, since: StreamId, until: StreamId, wanted: FeedFilter, page: int = REPLAY_PAGE
) -> AsyncIterator[tuple[StreamId, list[FeedEvent]]]:
    """The wanted events in (since, until] from the streams, in pages, oldest first: each page is
    (its cutoff, its events), every event up to the cutoff, of every type, read, so the cutoff is
    a complete resume point. A page reads at most `page` entries of each stream."""
    redis = get_async_redis()
    if types is None:
        types = [member.decode() for member in await redis.smembers(streams.TYPES_KEY)]
    types = sorted(types)
    low = since
    while low < until:
        pipe = redis.pipeline(transaction=False)
        for event_type in types:
            pipe.xrange(streams.stream_key(event_type), min=f"({format_stream_id(low)}", max=format_stream_id(until), count=page)
        got: list[FeedEvent] = []
        cutoff = until
        for event_type, entries in zip(types, await pipe.execute(), strict=True):
            got += (FeedEvent.from_entry(event_type, entry_id, fields) for entry_id, fields in entries)
            if len(entries) == page:  # this stream may hold more: the page ends at its last entry read
                cutoff = min(cutoff, parse_stream_id(entries[-1][0]))
        yield cutoff, sorted((event for event in got if event.id <= cutoff and wanted.wants(event)), key=lambda e: e.id)
        low = cutoff


_feeds: dict = {}  # by event loop


def get_feed() -> Feed:
    """The feed of the running event loop (one per web process)."""
    return for_event_loop(_feeds, Feed)
