"""Coordination signals: typed messages between agents that live `ttl_seconds`.

A directed signal waits in its target's inbox, a sorted set scored by the signal's expiry on
Redis's clock, so an expired signal is dropped before anything reads the inbox and is never
delivered. A broadcast is stored once, with its expiry, and numbered in the order broadcasts are
sent (for all types, and for its type); each agent reads them from its cursor, past which it has
done nothing (see TAKE), so a take costs the same however many broadcasts are live. Taking a
signal is one Lua script: the oldest match is removed from the inbox, or marked seen by this agent
if it is a broadcast (the agent's seen set), so a directed signal reaches its target once and a
broadcast each agent once, however many processes take at the same time. An agent does not
receive its own broadcasts.

One key's signals are bounded (core.quotas): the payload's size, the live signals of a sender
and of an inbox, checked in the script that stores the signal.

A waiting agent sleeps on the wake-up channel of its inbox and of broadcasts (core.wakeups);
sending a signal notifies it, so the wait returns within a Redis round trip of the send.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.conf import settings
from django.utils import timezone

from coordination import heartbeats
from core import events, quotas, wakeups
from core.authentication import KeyCheck
from core.fastpaths.pipelined_redis import Script
from core.redis import get_pipelined_redis, get_redis

INBOX_PREFIX = "telemetry:signals:inbox:"
SEEN_PREFIX = "telemetry:signals:seen:"
CURSOR_PREFIX = "telemetry:signals:cursor:"  # + agent: hash, signal type ('' any) -> broadcasts done
SENT_PREFIX = "telemetry:signals:sent:"  # + agent: sorted set, its live signals by expiry
# Broadcasts: each body once (a hash by signal id), their expiry (sorted set by time), and their
# order, for all types and per type (sorted sets by a sequence number).
BROADCAST_BODIES = "telemetry:signals:broadcast-bodies"
BROADCAST_EXPIRY = "telemetry:signals:broadcast-expiry"
BROADCAST_ORDER = "telemetry:signals:broadcast-order:"  # + signal type, or '' for all types
BROADCAST_SEQUENCE = "telemetry:signals:broadcast-sequence"
BROADCAST_CHANNEL = "signals:broadcast"
# A take drops at most this many expired broadcasts (the rest go on the next takes): its cost stays
# the same however many expire at once.
EXPIRE_BATCH = 100

# Drops expired broadcasts from the bodies, the expiry and the orders (at most EXPIRE_BATCH).
_EXPIRE_BROADCASTS = f"""
local function expire_broadcasts(now)
  local gone = redis.call('ZRANGEBYSCORE', '{BROADCAST_EXPIRY}', '-inf', now, 'LIMIT', 0, {EXPIRE_BATCH})
  for _, id in ipairs(gone) do
    local raw = redis.call('HGET', '{BROADCAST_BODIES}', id)
    if raw then
      redis.call('ZREM', '{BROADCAST_ORDER}' .. cjson.decode(raw).signal_type, id)
    end
    redis.call('ZREM', '{BROADCAST_ORDER}', id)
    redis.call('ZREM', '{BROADCAST_EXPIRY}', id)
    redis.call('HDEL', '{BROADCAST_BODIES}', id)
  end
end
"""

# KEYS: the target's inbox ('' for a broadcast), the sender's live signals, and for a glob key the
# set of agent ids it registered ('' otherwise: coordination.heartbeats.registered_by). ARGV: the
# signal (JSON), its id, its type, its TTL in ms, the wake-up channel to notify, SIGNALS_PER_SENDER,
# SIGNALS_PER_INBOX, AGENTS_PER_KEY (0: no bound). Refuses (counted, nothing written) a sender or
# an inbox at its bound, and a sender new to a glob key that has registered AGENTS_PER_KEY agent
# ids: the live signals of one key are at most AGENTS_PER_KEY x SIGNALS_PER_SENDER, however many
# names its pattern allows. The keys live as long as their last signal. One round trip, which also
# publishes signal.sent: the wait wakes as soon as it returns.
SEND = events.EventScript(
    _EXPIRE_BROADCASTS
    + f"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local signal, id, signal_type, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local registered, agents_cap = KEYS[3], tonumber(ARGV[8])
local new_sender = registered ~= '' and agents_cap > 0 and redis.call('SISMEMBER', registered, ARGV[9]) == 0
if new_sender and redis.call('SCARD', registered) >= agents_cap then
  {quotas.lua_refuse("'agents_per_key'")}
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if tonumber(ARGV[6]) > 0 and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then
  {quotas.lua_refuse("'signals_per_sender'")}
end
if KEYS[1] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if tonumber(ARGV[7]) > 0 and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[7]) then
    {quotas.lua_refuse("'signals_per_inbox'")}
  end
  redis.call('ZADD', KEYS[1], now + ttl, signal)
  if redis.call('PTTL', KEYS[1]) < ttl then
    redis.call('PEXPIRE', KEYS[1], ttl)
  end
else
  expire_broadcasts(now)
  local seq = redis.call('INCR', '{BROADCAST_SEQUENCE}')
  redis.call('HSET', '{BROADCAST_BODIES}', id, signal)
  redis.call('ZADD', '{BROADCAST_EXPIRY}', now + ttl, id)
  redis.call('ZADD', '{BROADCAST_ORDER}', seq, id)
  redis.call('ZADD', '{BROADCAST_ORDER}' .. signal_type, seq, id)
end
if new_sender then
  redis.call('SADD', registered, ARGV[9])
end
redis.call('ZADD', KEYS[2], now + ttl, id)
if redis.call('PTTL', KEYS[2]) < ttl then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
redis.call('PUBLISH', ARGV[5], '')
"""
)

# KEYS: the agent's inbox, its seen set, its cursors.
# ARGV: agent id, signal type ('' any), source agent ('' any), take ('1' or '0'), all ('1' or '0'),
# SIGNAL_BROADCAST_WINDOW, the longest TTL of a signal (ms).
# Returns the matching signals (JSON), oldest first: all of them, or only the oldest. With take,
# they are removed from the inbox (and from their sender's live signals) or marked seen.
#
# The inbox holds at most SIGNALS_PER_INBOX signals. Broadcasts are read from the agent's cursor
# for the type asked for ('' any): every broadcast before it is done for this agent (its own,
# seen, or expired), and the take reads at most SIGNAL_BROADCAST_WINDOW after it, so its cost is
# the same however many broadcasts are live. The cursor moves past the done broadcasts at its
# head; it lives as long as the longest TTL, past which every broadcast before it has expired.
TAKE = Script(
    _EXPIRE_BROADCASTS
    + f"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local agent, wanted_type, wanted_source = ARGV[1], ARGV[2], ARGV[3]
local take, all, window, longest = ARGV[4] == '1', ARGV[5] == '1', tonumber(ARGV[6]), tonumber(ARGV[7])
local function matches(signal)
  return (wanted_type == '' or signal.signal_type == wanted_type)
    and (wanted_source == '' or signal.source_agent == wanted_source)
end
local found = {{}}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #entries, 2 do
  local signal = cjson.decode(entries[i])
  if matches(signal) then
    local expires = tonumber(entries[i + 1])
    found[#found + 1] = {{entries[i], expires - signal.ttl_seconds * 1000, expires, false, signal}}
  end
end
expire_broadcasts(now)
local cursor = tonumber(redis.call('HGET', KEYS[3], wanted_type) or '0')
local order = redis.call('ZRANGEBYSCORE', '{BROADCAST_ORDER}' .. wanted_type, '(' .. cursor, '+inf',
  'WITHSCORES', 'LIMIT', 0, window)
local done = {{}}
for i = 1, #order, 2 do
  local id = order[i]
  local raw = redis.call('HGET', '{BROADCAST_BODIES}', id)
  local expires = tonumber(redis.call('ZSCORE', '{BROADCAST_EXPIRY}', id) or '0')
  done[id] = true
  if raw and expires > now then
    local signal = cjson.decode(raw)
    if signal.source_agent ~= agent and redis.call('SISMEMBER', KEYS[2], id) == 0 then
      done[id] = false
      if matches(signal) then
        found[#found + 1] = {{raw, expires - signal.ttl_seconds * 1000, expires, true, signal, tonumber(order[i + 1])}}
      end
    end
  end
end
-- Oldest first; broadcasts sent in one millisecond in the order they were sent.
table.sort(found, function(a, b)
  if a[2] ~= b[2] then
    return a[2] < b[2]
  end
  return (a[6] or 0) < (b[6] or 0)
end)
if not all then
  found = {{found[1]}}
end
local answer = {{}}
for _, match in ipairs(found) do
  local signal = match[5]
  if take then
    if match[4] then
      redis.call('SADD', KEYS[2], signal.signal_id)
      if redis.call('PTTL', KEYS[2]) < match[3] - now then
        redis.call('PEXPIRE', KEYS[2], match[3] - now)
      end
      done[signal.signal_id] = true
    else
      redis.call('ZREM', KEYS[1], match[1])
      redis.call('ZREM', '{SENT_PREFIX}' .. signal.source_agent, signal.signal_id)
    end
  end
  answer[#answer + 1] = match[1]
end
local moved = cursor
for i = 1, #order, 2 do
  if not done[order[i]] then
    break
  end
  moved = tonumber(order[i + 1])
end
if moved ~= cursor then
  redis.call('HSET', KEYS[3], wanted_type, moved)
  redis.call('PEXPIRE', KEYS[3], longest)
end
return answer
""",
    get_pipelined_redis,
)
# The longest TTL a signal may ask for (coordination.schemas.SignalIn), in ms.
LONGEST_TTL_MS = 86_400 * 1000


def inbox_channel(agent_id: str) -> str:
    return f"signals:{agent_id}"


async def send(
    signal_type: str,
    source_agent: str,
    target_agent: str | None,
    payload: dict[str, Any],
    ttl_seconds: int | None,
    key_check: KeyCheck | None = None,
    agent_key=None,
) -> dict[str, Any]:
    """Send a signal to `target_agent`, or to every agent when it is None; returns the signal.
    With `key_check`, for the key the request came with: StaleKey, and nothing sent, when it fails.
    `agent_key` (None: staff) is the key sending it: a glob key's senders count as its agent ids."""
    if settings.SIGNAL_MAX_PAYLOAD_BYTES and len(json.dumps(payload)) > settings.SIGNAL_MAX_PAYLOAD_BYTES:  # (ASCII)
        raise await quotas.refused_async("signal_payload_too_large")
    signal = {
        "signal_id": uuid.uuid4().hex,
        "signal_type": signal_type,
        "source_agent": source_agent,
        "target_agent": target_agent,
        "payload": payload,
        "timestamp": timezone.now().isoformat(),
        "ttl_seconds": ttl_seconds or settings.SIGNAL_DEFAULT_TTL,
    }
    inbox, channel = (INBOX_PREFIX + target_agent, inbox_channel(target_agent)) if target_agent else ("", BROADCAST_CHANNEL)
    args = [
        json.dumps(signal),
        signal["signal_id"],
        signal_type,
        signal["ttl_seconds"] * 1000,
        wakeups.channel_name(channel),
        settings.SIGNALS_PER_SENDER,
        settings.SIGNALS_PER_INBOX,
    ]
    registered, agents_cap = heartbeats.registered_by(agent_key)
    args += [agents_cap, source_agent]
    keys = [inbox, SENT_PREFIX + source_agent, registered]
    await SEND(keys=keys, args=args, events=[events.Event("signal.sent", signal)], key_check=key_check)
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
    keys = [INBOX_PREFIX + agent_id, SEEN_PREFIX + agent_id, CURSOR_PREFIX + agent_id]
    args = [agent_id, signal_type, source_agent, int(remove), int(every), settings.SIGNAL_BROADCAST_WINDOW, LONGEST_TTL_MS]
    found = await TAKE(keys=keys, args=args)
    return [json.loads(raw) for raw in found]


def live() -> list[dict]:
    """Every live signal (for the admin), newest first, each with `expires_in` seconds."""
    redis = get_redis()
    keys = [key.decode() for key in redis.scan_iter(match=f"{INBOX_PREFIX}*", count=1000)]
    now_ms = int(redis.time()[0] * 1000)
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.zrangebyscore(key, now_ms, "+inf", withscores=True)
    pipe.zrangebyscore(BROADCAST_EXPIRY, now_ms, "+inf", withscores=True)
    *inboxes, broadcasts = pipe.execute()
    bodies = redis.hmget(BROADCAST_BODIES, [signal_id for signal_id, _ in broadcasts]) if broadcasts else []
    found = [entry for entries in inboxes for entry in entries]
    found += [(raw, expires) for raw, (_, expires) in zip(bodies, broadcasts, strict=True) if raw is not None]
    signals = [{**json.loads(raw), "expires_in": round((expires - now_ms) / 1000, 1)} for raw, expires in found]
    return sorted(signals, key=lambda s: s["timestamp"], reverse=True)
