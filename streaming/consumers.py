"""The websocket live feed, /ws/live/?types=&agents=&since=

Messages to the client (JSON text):
  {"type": "events", "events": [StreamEvent, ...]}   oldest first; `event_id` is the resume point
  {"type": "ready", "replayed": N, "live_after": ID}  sent once, after the events since `since`
  {"type": "error", "error": {"code", "message"}}     then the server closes (codes in core.websocket)

A replay from `since` is sent a page at a time; past LIVE_REPLAY_MAX_EVENTS events, or past
LIVE_CLIENT_BUFFER bytes with what the live feed queued meanwhile, it stops with the error
`replay_limit`, whose `since` is where to reconnect from (no event is lost), and a close (4008).
A key past its API_RATE_LIMIT or its WEBSOCKETS_PER_KEY open feeds is refused (4429).

The client sends nothing: a message from it (text or binary, whatever it holds) is answered with
the error `unexpected_message` and a close (4400). One larger than the web server's limit
(uvicorn's --ws-max-size) is closed by the server before it reaches the consumer (1009).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from rest_framework import exceptions

from core import events, quotas, streams
from core.api import describe
from core.redis import REDIS_DOWN
from core.throttling import count_request
from core.websocket import (
    CLOSE_BAD_REQUEST,
    CLOSE_LAGGED,
    CLOSE_UNAUTHENTICATED,
    authorize_websocket,
    close_code,
    key_group,
)
from streaming.feed import FeedFilter, frames, get_feed, replay, session_reader_async

# Seconds a websocket's slot (WEBSOCKETS_PER_KEY) is leased for; renewed a third of it before
# its end, so a process killed with feeds open frees their slots within this.
SLOT_LEASE_SECONDS = 60
LAGGED = object()  # in a client's queue: it fell too far behind and is dropped


def parse_query(query_string: bytes, key) -> tuple[FeedFilter, tuple[int, int] | None]:
    query = {name: values[-1] for name, values in parse_qs(query_string.decode("latin-1")).items()}
    fields: dict[str, list[str]] = {}
    types = _listed(query.get("types"))
    if types is not None and not all(events.valid_event_type(t) for t in types):
        fields["types"] = ["List event types, comma-separated."]
    since = query.get("since")
    try:
        since_id = streams.parse_stream_id(since) if since else None
    except ValueError:
        fields["since"] = ["A stream id such as 1700000000000-0, as the events carry in `event_id`."]
    if fields:
        raise exceptions.ValidationError(fields)
    return FeedFilter(types=types, agents=_listed(query.get("agents")), key=key), since_id


def _listed(value: str | None) -> frozenset[str] | None:
    names = frozenset(name for name in (value or "").split(",") if name)
    return names or None


class LiveFeedConsumer(AsyncWebsocketConsumer):
    """One client of the process's live feed. Its messages wait in its own queue; a client more
    than LIVE_CLIENT_BUFFER bytes behind is dropped (it reconnects with `since`) rather than
    holding up the others or the server's memory."""

    key = None
    slot: quotas.Slot | None = None
    renewer: asyncio.Task | None = None
    writer: asyncio.Task | None = None
    queue: asyncio.Queue | None = None

    async def connect(self):
        try:
            self.key = await authorize_websocket(self.scope, "streams:read")
            reader = self.key if self.key is not None else await session_reader_async(self.scope["user"])
            self.filter, since = parse_query(self.scope["query_string"], reader)
            await count_request(self.key)
            if self.key is not None and settings.WEBSOCKETS_PER_KEY:
                slot = quotas.Slot("websockets_per_key", self.key, settings.WEBSOCKETS_PER_KEY)
                self.slot = slot if await slot.take(SLOT_LEASE_SECONDS) else None
        except exceptions.APIException as exc:
            await self.accept()
            await self.send(text_data=json.dumps({"type": "error", **describe(exc)}))
            await self.close(code=close_code(exc))
            return
        await self.accept()
        if self.key is not None:
            await self.channel_layer.group_add(key_group(self.key), self.channel_name)
        self.queue = asyncio.Queue()
        self.backlog = 0  # bytes queued for this client
        self.floor = since or (0, 0)
        live_after = await get_feed().subscribe(self)
        if self.slot is not None:
            self.renewer = asyncio.create_task(self._renew_slot())
        replayed = await self._replay(since, live_after) if since else 0
        if replayed is None:
            return
        ready = {"type": "ready", "replayed": replayed, "live_after": streams.format_stream_id(live_after)}
        await self.send(text_data=json.dumps(ready))
        self.writer = asyncio.create_task(self._write())

    async def _replay(self, since, live_after) -> int | None:
        """Send the events in (since, live_after] a page at a time; how many. Past
        LIVE_REPLAY_MAX_EVENTS events or LIVE_CLIENT_BUFFER bytes (with what the live feed queued
        meanwhile), the client is told where to resume and closed: None."""
        replayed = sent_bytes = 0
        async for cutoff, page in replay(self.filter.types, since, live_after, self.filter):
            for frame in frames(page):
                await self.send(text_data=frame)
                sent_bytes += len(frame)
            replayed += len(page)
            over = 0 < settings.LIVE_REPLAY_MAX_EVENTS <= replayed or sent_bytes + self.backlog > settings.LIVE_CLIENT_BUFFER
            if over and cutoff < live_after:
                get_feed().unsubscribe(self)
                await quotas.refused_async("replay_limit")
                resume = streams.format_stream_id(cutoff)
                message = f"The replay stops at LIVE_REPLAY_MAX_EVENTS or LIVE_CLIENT_BUFFER; reconnect with since={resume}."
                error = {"code": "replay_limit", "message": message, "since": resume}
                await self.send(text_data=json.dumps({"type": "error", "error": error}))
                await self.close(code=CLOSE_LAGGED)
                return None
        return replayed

    async def _renew_slot(self):
        while True:
            await asyncio.sleep(SLOT_LEASE_SECONDS / 3)
            with contextlib.suppress(*REDIS_DOWN):  # (tried again in a third of the lease)
                await self.slot.renew(SLOT_LEASE_SECONDS)

    async def receive(self, text_data=None, bytes_data=None):
        message = "The live feed takes no messages: choose what it sends with the query string (types, agents, since)."
        await self.send(text_data=json.dumps({"type": "error", "error": {"code": "unexpected_message", "message": message}}))
        await self.close(code=CLOSE_BAD_REQUEST)

    def deliver(self, frame: str) -> None:
        self.backlog += len(frame)
        if self.backlog <= settings.LIVE_CLIENT_BUFFER:
            self.queue.put_nowait(frame)
            return
        get_feed().unsubscribe(self)
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(LAGGED)

    async def _write(self):
        while True:
            frame = await self.queue.get()
            if frame is LAGGED:
                message = "This client fell behind the feed; reconnect with since=<the last event_id it got>."
                await self.send(text_data=json.dumps({"type": "error", "error": {"code": "lagged", "message": message}}))
                await self.close(code=CLOSE_LAGGED)
                return
            await self.send(text_data=frame)
            self.backlog -= len(frame)

    async def disconnect(self, code):
        if self.renewer is not None:
            self.renewer.cancel()
        if self.slot is not None:
            await self.slot.give_back()
        if self.queue is None:
            return
        get_feed().unsubscribe(self)
        if self.writer is not None:
            self.writer.cancel()
        if self.key is not None:
            await self.channel_layer.group_discard(key_group(self.key), self.channel_name)

    async def key_revoked(self, event):
        await self.close(code=CLOSE_UNAUTHENTICATED)
