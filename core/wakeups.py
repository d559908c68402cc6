"""Wake-ups for long-held waits (signals, approvals), with no polling.

A waiter names the channels that concern it, checks its condition, and sleeps until a
notification on one of those channels or its deadline, then checks again. Notifications travel
through Redis pub/sub, so a change made on one web process wakes a waiter on another. Each event
loop (one per web process) holds one pub/sub connection and hands notifications to its local
waiters: a thousand waiters cost one connection and no thread. Pub/sub keeps nothing for a
disconnected subscriber, so after a reconnect every waiter is woken to check again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable

from core.db import give_back_connections
from core.redis import for_event_loop, get_async_blocking_redis, get_redis

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "telemetry:wake:"
# A pub/sub read returns this often when idle, so a dead connection is noticed (redis-py pings).
IDLE_READ_SECONDS = 20.0


def channel_name(channel: str) -> str:
    return f"{CHANNEL_PREFIX}{channel}"


def notify(*channels: str) -> None:
    """Wake the waiters on `channels` (a Lua script may PUBLISH to `channel_name(channel)` itself)."""
    pipe = get_redis().pipeline(transaction=False)
    for channel in channels:
        pipe.publish(channel_name(channel), "")
    pipe.execute()


class Waiter:
    def __init__(self):
        self._woken = asyncio.Event()

    def wake(self) -> None:
        self._woken.set()

    async def sleep(self, seconds: float) -> None:
        """Until a wake-up (possibly one that came since the last sleep) or `seconds` pass."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._woken.wait(), seconds)
        self._woken.clear()


class Waker:
    """The pub/sub listener of one event loop and its waiters, by channel."""

    def __init__(self):
        self._waiters: dict[str, set[Waiter]] = defaultdict(set)
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task | None = None

    @contextlib.asynccontextmanager
    async def waiting(self, channels: Iterable[str], ready_timeout: float) -> AsyncIterator[Waiter]:
        """A Waiter woken by notifications on `channels`. It is registered, and the listener is
        subscribed, before the block runs: a notification sent after the block's first check
        reaches it."""
        waiter = Waiter()
        names = [channel_name(channel) for channel in channels]
        for name in names:
            self._waiters[name].add(waiter)
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="wakeups")
        try:
            with contextlib.suppress(TimeoutError):
                # Without Redis the waiter's own checks fail and say so; no need to fail here.
                await asyncio.wait_for(self._subscribed.wait(), ready_timeout)
            yield waiter
        finally:
            for name in names:
                self._waiters[name].discard(waiter)
                if not self._waiters[name]:
                    del self._waiters[name]
            if not self._waiters and self._task is not None:
                self._task.cancel()
                self._task = None
                self._subscribed.clear()

    async def _listen(self) -> None:
        me = asyncio.current_task()
        while self._task is me:
            pubsub = get_async_blocking_redis().pubsub()
            try:
                await pubsub.psubscribe(f"{CHANNEL_PREFIX}*")
                while self._task is me:
                    message = await pubsub.get_message(timeout=IDLE_READ_SECONDS)
                    if message is None:
                        continue
                    if message["type"] == "psubscribe":
                        self._subscribed.set()
                        self._wake_all()  # whatever was missed while not subscribed
                    elif message["type"] == "pmessage":
                        for waiter in list(self._waiters.get(message["channel"].decode(), ())):
                            waiter.wake()
            except Exception:
                if self._task is me:
                    self._subscribed.clear()
                    logger.exception("wake-ups: the pub/sub connection failed; reconnecting in 1 s")
                    await asyncio.sleep(1)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def _wake_all(self) -> None:
        for waiters in list(self._waiters.values()):
            for waiter in list(waiters):
                waiter.wake()


_wakers: dict = {}  # by event loop


def get_waker() -> Waker:
    """The Waker of the running event loop."""
    return for_event_loop(_wakers, Waker)


async def wait_until(check, channels: Iterable[str], timeout: float):
    """`await check()` until it returns something truthy (returned) or `timeout` seconds pass
    (None); re-checked whenever a channel in `channels` is notified."""
    found = await check()
    if found or timeout <= 0:
        return found
    channels = list(channels)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with get_waker().waiting(channels, ready_timeout=min(timeout, 5.0)) as waiter:
        held = False
        while True:
            found = await check()
            remaining = deadline - loop.time()
            if found or remaining <= 0:
                return found
            await give_back_connections()
            if not held:  # (what tests wait for before they wake it)
                logger.debug("wake-ups: a wait on %s is held", " ".join(channels))
                held = True
            await waiter.sleep(remaining)
