"""Coordination signals: typed messages between agents that live `ttl_seconds`.

A directed signal waits in its target's inbox, a broadcast in the one broadcast set; both are
sorted sets scored by the signal's expiry on Redis's clock, so an expired signal is dropped
before anything reads the set and is never delivered. Taking a signal is one Lua script: the
oldest match is removed from the inbox, or marked seen by this agent if it is a broadcast (the
agent's seen set), so a directed signal reaches its target once and a broadcast each agent once,
however many processes take at the same time. An agent does not receive its own broadcasts.

A waiting agent sleeps on the wake-up channel of its inbox and of broadcasts (core.wakeups);
sending a signal notifies it, so the wait returns within a Redis round trip of the send.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.conf import settings
from django.utils import timezone

from core import events, wakeups
from core.authentication import KeyCheck
from core.fastpaths.pipelined_redis import Script
from core.redis import get_pipelined_redis, get_redis

INBOX_PREFIX = "telemetry:signals:inbox:"
BROADCASTS = "telemetry:signals:broadcasts"
SEEN_PREFIX = "telemetry:signals:seen:"
BROADCAST_CHANNEL = "signals:broadcast"

# KEYS: the set; ARGV: the signal (JSON), its TTL in ms, the wake-up channel to notify. The set
# lives as long as its last signal. One round trip, which also publishes signal.sent: the wait
# wakes as soon as it returns.
SEND = events.EventScript("""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
redis.call('PUBLISH', ARGV[3], '')
""")

# KEYS: the agent's inbox, the broadcasts, the agent's seen set.
# ARGV: agent id, signal type ('' any), source agent ('' any), take ('1' or '0'), all ('1' or '0').
# Returns the matching signals (JSON), oldest first: all of them, or only the oldest. With take,
# they are removed from the inbox or marked seen.
TAKE = Script(
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local agent, wanted_type, wanted_source = ARGV[1], ARGV[2], ARGV[3]
local take, all = ARGV[4] == '1', ARGV[5] == '1'
local found = {}
for index, key in ipairs({KEYS[1], KEYS[2]}) do
  local broadcast = index == 2
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    local signal = cjson.decode(entries[i])
    if (wanted_type == '' or signal.signal_type == wanted_type)
      and (wanted_source == '' or signal.source_agent == wanted_source)
      and not (broadcast and (signal.source_agent == agent
        or redis.call('SISMEMBER', KEYS[3], signal.signal_id) == 1)) then
      local expires = tonumber(entries[i + 1])
      found[#found + 1] = {entries[i], expires - signal.ttl_seconds * 1000, expires, broadcast, signal.signal_id}
    end
  end
end
table.sort(found, function(a, b) return a[2] < b[2] end)
if not all then
  found = {found[1]}
end
local answer = {}
for _, match in ipairs(found) do
  if take then
    if match[4] then
      redis.call('SADD', KEYS[3], match[5])
      if redis.call('PTTL', KEYS[3]) < match[3] - now then
        redis.call('PEXPIRE', KEYS[3], match[3] - now)
      end
    else
      redis.call('ZREM', KEYS[1], match[1])
    end
  end
  answer[#answer + 1] = match[1]
end
return answer
""",
    get_pipelined_redis,
)


def inbox_channel(agent_id: str) -> str:
    return f"signals:{agent_id}"


async def send(
    signal_type: str,
    source_agent: str,
    target_agent: str | None,
    payload: dict[str, Any],
    ttl_seconds: int | None,
    key_check: KeyCheck | None = None,
) -> dict[str, Any]:
    """Send a signal to `target_agent`, or to every agent when it is None; returns the signal.
    With `key_check`, for the key the request came with: StaleKey, and nothing sent, when it fails."""
    signal = {
        "signal_id": uuid.uuid4().hex,
        "signal_type": signal_type,
        "source_agent": source_agent,
        "target_agent": target_agent,
        "payload": payload,
        "timestamp": timezone.now().isoformat(),
        "ttl_seconds": ttl_seconds or settings.SIGNAL_DEFAULT_TTL,
    }
    key, channel = (INBOX_PREFIX + target_agent, inbox_channel(target_agent)) if target_agent else (BROADCASTS, BROADCAST_CHANNEL)
    args = [json.dumps(signal), signal["ttl_seconds"] * 1000, wakeups.channel_name(channel)]
    await SEND(keys=[key], args=args, events=[events.Event("signal.sent", signal)], key_check=key_check)
    return signal


async def take(agent_id: str, signal_type: str = "", source_agent: str = "", consume: bool = True) -> dict | None:
    """The oldest live signal for `agent_id` that matches, taken (or only looked at)."""
    found = await _match(agent_id, signal_type, source_agent, remove=consume, every=False)
    return found[0] if found else None


async def receive(agent_id: str, signal_type: str, source_agent: str, consume: bool, timeout: float) -> dict | None:
    """`take`, waiting up to `timeout` seconds for a match to arrive."""
    return await wakeups.wait_until(
        lambda: take(agent_id, signal_type, source_agent, consume),
        [inbox_channel(agent_id), BROADCAST_CHANNEL],
        timeout,
    )


async def pending(agent_id: str, signal_type: str = "") -> list[dict]:
    """Every live signal `agent_id` would receive, oldest first."""
    return await _match(agent_id, signal_type, "", remove=False, every=True)


async def clear(agent_id: str, signal_type: str = "") -> int:
    """Take (and drop) every live signal for `agent_id`; returns how many."""
    return len(await _match(agent_id, signal_type, "", remove=True, every=True))


async def _match(agent_id: str, signal_type: str, source_agent: str, remove: bool, every: bool) -> list[dict]:
    keys = [INBOX_PREFIX + agent_id, BROADCASTS, SEEN_PREFIX + agent_id]
    found = await TAKE(keys=keys, args=[agent_id, signal_type, source_agent, int(remove), int(every)])
    return [json.loads(raw) for raw in found]


def live() -> list[dict]:
    """Every live signal (for the admin), newest first, each with `expires_in` seconds."""
    redis = get_redis()
    keys = [BROADCASTS, *(key.decode() for key in redis.scan_iter(match=f"{INBOX_PREFIX}*", count=1000))]
    now_ms = int(redis.time()[0] * 1000)
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.zrangebyscore(key, now_ms, "+inf", withscores=True)
    signals = [
        {**json.loads(raw), "expires_in": round((expires - now_ms) / 1000, 1)}
        for entries in pipe.execute()
        for raw, expires in entries
    ]
    return sorted(signals, key=lambda s: s["timestamp"], reverse=True)
