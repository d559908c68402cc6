"""Bounds on what one agent key can consume, and the count of their refusals.

Each bound is a setting (telemetry_site/settings.py, docs/operations.md). A request past one is
refused with 429 (a count) or 413 (a size) and the bound's name as its error code; nothing it
asked for is stored. Bounds on data in Redis are checked inside the script that writes it, so
concurrent requests cannot pass one together. Every refusal adds one to REFUSALS_KEY (a hash:
bound -> refusals), which /metrics reads: any process answers for all of them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager

from django.conf import settings
from rest_framework import exceptions

from core.fastpaths.pipelined_redis import Script
from core.observing import holding
from core.redis import REDIS_DOWN, get_pipelined_redis, get_redis

logger = logging.getLogger(__name__)

REFUSALS_KEY = "telemetry:quota-refusals"
SLOTS_PREFIX = "telemetry:quota:slots:"  # + bound + key prefix: sorted set, slot id -> end of its lease (ms)
CREATED_PREFIX = "telemetry:quota:created:"  # + bound + key prefix: what the key created (a set)
# A script refuses by returning redis.error_reply(QUOTA_ERROR .. bound), having written nothing.
QUOTA_ERROR = "QUOTA "

# bound (the error code) -> HTTP status, the setting that sets it, and what the client is told.
BOUNDS = {
    "signal_payload_too_large": (413, "SIGNAL_MAX_PAYLOAD_BYTES", "The signal's payload is larger than {} bytes as JSON"),
    "signals_per_sender": (
        429,
        "SIGNALS_PER_SENDER",
        "This agent has {} live signals already; wait for some to expire or be taken",
    ),
    "signals_per_inbox": (429, "SIGNALS_PER_INBOX", "The target's inbox holds {} live signals already"),
    "stream_entry_too_large": (413, "STREAM_ENTRY_MAX_BYTES", "The event is larger than {} bytes"),
    "new_event_types": (429, "STREAM_NEW_TYPES_PER_KEY", "This key has created {} event types (streams:admin has no bound)"),
    "agents_per_key": (429, "AGENTS_PER_KEY", "This key has registered {} agent ids already"),
    "metric_names_per_key": (429, "METRIC_NAMES_PER_KEY", "This key has created {} metric names already"),
    "metric_series_per_key": (429, "METRIC_SERIES_PER_KEY", "This key has created {} metric series already"),
    "held_waits_per_key": (429, "HELD_WAITS_PER_KEY", "This key holds {} waits already; retry later"),
    "websockets_per_key": (429, "WEBSOCKETS_PER_KEY", "This key has {} live feeds open already"),
    "approval_requests_per_key": (429, "APPROVAL_REQUESTS_PER_MINUTE", "This key sent {} approval requests in the last minute"),
    "approval_context_too_large": (413, "APPROVAL_CONTEXT_MAX_BYTES", "The request's context is larger than {} bytes as JSON"),
    "heartbeat_metadata_too_large": (413, "HEARTBEAT_METADATA_MAX_BYTES", "The agent's metadata is larger than {} bytes as JSON"),
    "replay_limit": (413, "LIVE_REPLAY_MAX_EVENTS", "The live feed replays at most {} events (or LIVE_CLIENT_BUFFER bytes)"),
    "throttled": (429, "API_RATE_LIMIT", "Request was throttled: more than {} requests"),
}
RETRY_AFTER_SECONDS = 1


class QuotaExceeded(exceptions.APIException):
    """A request past a bound: 429 or 413, the bound as its code."""

    def __init__(self, bound: str, wait: float | None = None):
        self.status_code, setting, message = BOUNDS[bound]
        self.bound = bound
        self.wait = wait if wait is not None else (RETRY_AFTER_SECONDS if self.status_code == 429 else None)
        super().__init__(f"{message.format(getattr(settings, setting))} ({setting}).", code=bound)


def lua_refuse(bound_expr: str) -> str:
    """Lua that counts a refusal of the bound `bound_expr` (a Lua expression) and returns it."""
    return f"redis.call('HINCRBY', '{REFUSALS_KEY}', {bound_expr}, 1)\nreturn redis.error_reply('{QUOTA_ERROR}' .. {bound_expr})"


def bound_of(error: Exception) -> str | None:
    """The bound a script's error answer names (see lua_refuse), or None."""
    text = str(error)
    return text.removeprefix(QUOTA_ERROR) if text.startswith(QUOTA_ERROR) and text[len(QUOTA_ERROR) :] in BOUNDS else None


def refused(bound: str) -> QuotaExceeded:
    """Count a refusal made in Python (a size, seen before anything is written) and return it.
    Without Redis the refusal stands, uncounted."""
    with contextlib.suppress(*REDIS_DOWN):
        get_redis().hincrby(REFUSALS_KEY, bound, 1)
    return QuotaExceeded(bound)


async def refuse_if_larger(bound: str, key, value) -> None:
    """A key's JSON `value` past the size its bound's setting allows (0: no bound) is refused before
    anything is written; staff sessions (no key) are not bounded."""
    limit = getattr(settings, BOUNDS[bound][1])
    if key is not None and limit and len(json.dumps(value)) > limit:  # (json.dumps writes ASCII)
        raise await refused_async(bound)


async def refused_async(bound: str) -> QuotaExceeded:
    with contextlib.suppress(*REDIS_DOWN):
        await get_pipelined_redis().execute("HINCRBY", REFUSALS_KEY, bound, 1)
    return QuotaExceeded(bound)


def refusal_counts() -> dict[str, int]:
    """Refusals by bound since Redis last lost its data (for /metrics)."""
    return {bound.decode(): int(count) for bound, count in get_redis().hgetall(REFUSALS_KEY).items()}


# KEYS: the set of what a key created (of one bound). ARGV: the cap, the bound, the members it
# would create. Returns 1 or 0 per member: created before, or admitted (added), or refused (counted).
_ADMIT = f"""
local cap, answer, refused = tonumber(ARGV[1]), {{}}, 0
for i = 3, #ARGV do
  if redis.call('SISMEMBER', KEYS[1], ARGV[i]) == 1 then
    answer[#answer + 1] = 1
  elseif redis.call('SCARD', KEYS[1]) < cap then
    redis.call('SADD', KEYS[1], ARGV[i])
    answer[#answer + 1] = 1
  else
    answer[#answer + 1] = 0
    refused = refused + 1
  end
end
if refused > 0 then
  redis.call('HINCRBY', '{REFUSALS_KEY}', ARGV[2], refused)
end
return answer
"""


def admit(bound: str, key, members: list[str], cap: int) -> set[str]:
    """Of the `members` `key` would create (metric names, series), those it may: what it created
    before, then new ones up to `cap` in all (counted in Redis, CREATED_PREFIX + bound + key)."""
    if key is None or not cap or not members:
        return set(members)
    try:
        answer = get_redis().eval(_ADMIT, 1, f"{CREATED_PREFIX}{bound}:{key.prefix}", cap, bound, *members)
    except REDIS_DOWN as exc:
        logger.warning("%s: Redis is unavailable (%s); not counted", bound, exc)
        return set(members)
    return {member for member, admitted in zip(members, answer, strict=True) if admitted}


# KEYS: the key's slots of one bound. ARGV: a slot id, its lease (ms), the cap, the bound.
_TAKE_SLOT = Script(
    f"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  {lua_refuse("ARGV[4]")}
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
""",
    get_pipelined_redis,
)


async def call(script: Script, keys: list[str], args: list):
    """Run `script`; QuotaExceeded when it refuses."""
    try:
        return await script(keys=keys, args=args)
    except Exception as exc:
        if (bound := bound_of(exc)) is not None:
            raise QuotaExceeded(bound) from None
        raise


class Slot:
    """One of the `cap` things of a bound (held waits, websockets) a key may have at once, across
    every process: a member of a sorted set, leased for `seconds` (renew() extends it), so a
    process killed while holding it leaves it to expire."""

    def __init__(self, bound: str, key, cap: int):
        self.name, self.id, self.cap, self.bound = f"{SLOTS_PREFIX}{bound}:{key.prefix}", uuid.uuid4().hex, cap, bound

    async def take(self, seconds: float) -> bool:
        """Whether it was taken; QuotaExceeded past the bound. Without Redis, False: the request
        goes on without a slot (what it waits on needs Redis, and fails or waits on its own)."""
        try:
            await call(_TAKE_SLOT, [self.name], [self.id, int(seconds * 1000), self.cap, self.bound])
        except REDIS_DOWN as exc:
            logger.warning("%s: Redis is unavailable (%s); not counted", self.bound, exc)
            return False
        return True

    async def renew(self, seconds: float) -> None:
        redis = get_pipelined_redis()
        await redis.execute("ZADD", self.name, "XX", int((time.time() + seconds) * 1000), self.id)
        await redis.execute("PEXPIRE", self.name, int(seconds * 1000))

    async def give_back(self) -> None:
        with contextlib.suppress(*REDIS_DOWN):  # (its lease ends it)
            await get_pipelined_redis().execute("ZREM", self.name, self.id)


@asynccontextmanager
async def held(key, seconds: float):
    """One of the HELD_WAITS_PER_KEY waits a key may hold at once, for a wait of `seconds` (and a
    margin). A staff session (None): no slot. No wait: no slot, and not held (core.observing)."""
    if seconds <= 0:
        yield
        return
    cap = settings.HELD_WAITS_PER_KEY
    slot = Slot("held_waits_per_key", key, cap) if key is not None and cap else None
    taken = slot is not None and await slot.take(seconds + 10)
    try:
        with holding():
            yield
    finally:
        if taken:
            await slot.give_back()


async def count_in_window(bound: str, key, cap: int, window_seconds: int) -> None:
    """One more request of `bound` by `key` in the last `window_seconds`, refused past `cap` (0: no
    bound). A sliding window: each request holds one of the `cap` slots for `window_seconds`, so
    no burst of twice the bound passes around a turn of the clock's minute."""
    if key is not None and cap:
        await Slot(bound, key, cap).take(window_seconds)
