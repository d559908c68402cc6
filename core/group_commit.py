"""Group commit: the single writes of one kind that a web process receives at the same time,
stored together in one transaction through the path batches take, each answered its own outcome.

A write waits while the group before it is stored: the first write of a quiet moment starts a
group at once (a lone client waits for nothing), and those arriving during a group's transaction
make the next one, up to MAX_GROUP. A group is stored on the thread of the request that started
it (on SQLite its process takes the database's write lock once a group, not once a request), and
a request holds no thread while it waits. The group's events are published from the event loop
once it has committed (core.events.publishing_after), before any of its writes is answered.

A group that fails for a reason other than an outage (an item the database refuses) is stored
again one item at a time, so the item at fault fails alone. An outage (the database locked or
away) fails every write of the group with its error, which the API answers 503; the group's
transaction rolled back, so none of it is stored.

Bench: bench/ingest.py and bench/single_writes.py (single POST /api/v1/runs against the bare view):
at 16 clients 16.7% -> 54.1% of the bare view on SQLite, 23.0% -> 49.5% on PostgreSQL; the web
process's CPU a request 2.19 -> 0.64 ms and 2.36 -> 0.62 ms (docs/performance.md, 2026-12-07)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from asgiref.sync import sync_to_async

from core.api import unavailable_dependency
from core.db import close_obsolete_connections
from core.events import publishing_after
from core.redis import for_event_loop

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")
MAX_GROUP = 500  # writes in one transaction


@dataclass
class Waiting(Generic[Item, Outcome]):
    """The writes of one event loop waiting for their group, and the task storing a group."""

    writes: list[tuple[Item, asyncio.Future[Outcome]]] = field(default_factory=list)
    task: asyncio.Task | None = None


class GroupCommit(Generic[Item, Outcome]):
    """`await group.write(item)` stores `item` with the others waiting, by `store(items)` (a list
    of outcomes, one per item, in order, from one transaction), and returns its outcome, or raises
    what storing it raised (or the exception that is its outcome)."""

    def __init__(self, store: Callable[[list[Item]], list[Outcome | Exception]]):
        self.store = store
        self.loops: dict[asyncio.AbstractEventLoop, Waiting[Item, Outcome]] = {}
        self.sizes: list[int] = []  # the size of each group this process stored, the last 100

    async def write(self, item: Item) -> Outcome:
        waiting = for_event_loop(self.loops, Waiting)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        waiting.writes.append((item, future))
        try:
            while not future.done():
                if waiting.task is None:  # this request starts the next group, in its own context
                    waiting.task = asyncio.create_task(self._store_next_group(waiting))
                await asyncio.wait([future, waiting.task], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # Not taken into a group yet: dropped (a group taken is stored all the same).
            waiting.writes = [write for write in waiting.writes if write[1] is not future]
            raise
        return future.result()

    async def _store_next_group(self, waiting: Waiting[Item, Outcome]) -> None:
        group, waiting.writes = waiting.writes[:MAX_GROUP], waiting.writes[MAX_GROUP:]
        try:
            try:
                outcomes = await publishing_after(sync_to_async(self._store_group)([item for item, _ in group]))
            except Exception as exc:  # noqa: BLE001 - the answer of each write of the group
                outcomes = [exc] * len(group)
            for (_, future), outcome in zip(group, outcomes, strict=True):
                if future.done():  # its request was cancelled
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
        except BaseException as exc:  # a bug, or the task cancelled: no write of the group waits forever
            for _, future in group:
                if future.done():
                    continue
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                else:
                    future.cancel()
            raise
        finally:
            waiting.task = None

    def _store_group(self, items: list[Item]) -> list[Outcome | Exception]:
        self.sizes = [*self.sizes[-99:], len(items)]
        try:
            return list(self.store(items))
        except Exception as exc:
            if len(items) == 1 or unavailable_dependency(exc):
                raise
            return [self._store_alone(item) for item in items]
        finally:
            close_obsolete_connections()

    def _store_alone(self, item: Item) -> Outcome | Exception:
        try:
            return self.store([item])[0]
        except Exception as exc:  # noqa: BLE001 - this item's own answer
            return exc
