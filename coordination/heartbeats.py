"""Heartbeats. An agent's live state is a Redis hash with a TTL, and its last beat is its score in
one sorted set, which the lists and the stale sweep read. The Agent row follows without a database
write per beat: it is written on start, stop and status change, and every few seconds in bulk by
`sync_registry` (a Celery beat task). The Agent row also records the stale spells: `sweep` sets
`stale_since` (once, by a conditional update) and the agent's next beat clears it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from redis.exceptions import WatchError

from coordination.models import Agent
from core import events, quotas
from core.authentication import KeyCheck
from core.redis import get_async_redis, get_redis

STATE_PREFIX = "telemetry:agent:"
LAST_BEATS = "telemetry:agents:last-beat"  # sorted set: agent id -> time of its last beat
REGISTRY_SYNCED_UNTIL = "telemetry:agents:registry-synced-until"
REGISTERED_PREFIX = "telemetry:quota:agents:"  # + key prefix: the agent ids a glob key registered
REGISTRY_SYNC_OVERLAP_SECONDS = 1.0
MARK_TRIES = 3  # transactions one sweep tries on an agent whose state keeps changing under it


# KEYS: the agent's state, LAST_BEATS. ARGV: agent id, time of the beat, the state's TTL, 1 to
# start afresh, the state's fields (a JSON object of strings), and for a glob key the set of agent
# ids it registered and AGENTS_PER_KEY ('' and 0 otherwise): a new id past that is refused, with
# nothing written. Returns the previous state (HGETALL's list).
BEAT = events.EventScript(f"""
local registered, cap = ARGV[6], tonumber(ARGV[7])
if cap > 0 and redis.call('SISMEMBER', registered, ARGV[1]) == 0 then
  if redis.call('SCARD', registered) >= cap then
    {quotas.lua_refuse("'agents_per_key'")}
  end
  redis.call('SADD', registered, ARGV[1])
end
local previous = redis.call('HGETALL', KEYS[1])
if ARGV[4] == '1' then
  redis.call('DEL', KEYS[1])
end
local state = {{}}
for name, value in pairs(cjson.decode(ARGV[5])) do
  state[#state + 1] = name
  state[#state + 1] = value
end
redis.call('HSET', KEYS[1], unpack(state))
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return previous
""")


def state_key(agent_id: str) -> str:
    return f"{STATE_PREFIX}{agent_id}"


@dataclass
class Heartbeat:
    """An agent's heartbeat as the SDK's AgentHeartbeat carries it, plus when it stopped and its own staleness threshold."""

    agent_id: str
    status: str
    progress: float
    current_task: str
    last_beat: datetime
    metadata: dict[str, Any] = field(default_factory=dict)
    display_name: str | None = None
    stale_after_seconds: float | None = None
    stale: bool = False
    stopped: bool = False

    @classmethod
    def from_redis(cls, raw: dict[bytes, bytes]) -> Heartbeat:
        return cls.from_state({key.decode(): value.decode() for key, value in raw.items()})

    @classmethod
    def from_state(cls, state: dict[str, str]) -> Heartbeat:
        """From the state's fields as stored."""
        return cls(
            agent_id=state["agent_id"],
            status=state.get("status", ""),
            progress=float(state.get("progress") or 0),
            current_task=state.get("current_task", ""),
            last_beat=datetime.fromtimestamp(float(state["last_beat"]), UTC),
            metadata=json.loads(state.get("metadata") or "{}"),
            display_name=state.get("display_name") or None,
            stale_after_seconds=float(state["stale_after"]) if state.get("stale_after") else None,
            stale=state.get("stale") == "1",
            stopped=state.get("stopped") == "1",
        )

    def alive(self) -> bool:
        """Beating within its threshold and not stopped."""
        return not self.stopped and time.time() - self.last_beat.timestamp() <= threshold_of(self, None)

    def to_dict(self) -> dict[str, Any]:
        # A shallow copy (asdict deep-copies: a fifth of a heartbeat request's time).
        return {**vars(self), "metadata": dict(self.metadata), "last_beat": self.last_beat.isoformat()}

    def event(self, event_type: str) -> events.Event:
        data = self.to_dict()
        data.pop("metadata")
        return events.Event(event_type, data)


def registered_by(key) -> tuple[str, int]:
    """For a key with a glob pattern (it could name any number of agents), the set of the agent ids
    it registered (by heartbeat, or as the sender of a signal: coordination.signals) and
    AGENTS_PER_KEY; ('', 0) for staff and keys that list their agents."""
    if key is None or not settings.AGENTS_PER_KEY or not any(set(pattern) & set("*?[") for pattern in key.agents):
        return "", 0
    return f"{REGISTERED_PREFIX}{key.prefix}", settings.AGENTS_PER_KEY


async def beat(
    agent_id: str, fields: dict[str, Any], key_check: KeyCheck | None = None, start: bool = False, agent_key=None
) -> Heartbeat:
    """Record a beat (or a start: the state begins afresh). An agent's first beat registers it.
    With `key_check`, for the key the request came with: StaleKey, and nothing recorded, when it
    fails."""
    now = time.time()
    key = state_key(agent_id)
    state = {"agent_id": agent_id, "last_beat": repr(now), "stale": "0", "stopped": "0"}
    for name in ("status", "progress", "current_task", "display_name", "stale_after"):
        if fields.get(name) is not None:
            state[name] = str(fields[name])
    if "metadata" in fields:
        state["metadata"] = json.dumps(fields["metadata"] or {})
    # One round trip: the previous state, the new one, and the event. A beat's event carries what
    # the beat set (the live page merges it into what it knows); a start's, the whole state.
    started = Heartbeat.from_state(state) if start else None
    if started:
        event = started.event("agent.started")
    else:
        event = events.Event("agent.heartbeat", {**state, "progress": float(state["progress"]), "stale": False,
                                                 "stopped": False, "last_beat": isoformat(now)})  # fmt: skip
    args = [agent_id, state["last_beat"], settings.AGENT_STATE_TTL, int(start), json.dumps(state), *registered_by(agent_key)]
    raw = await BEAT(keys=[key, LAST_BEATS], args=args, events=[event], key_check=key_check)
    previous = {name.decode(): value.decode() for name, value in zip(raw[::2], raw[1::2], strict=True)}
    heartbeat = started or Heartbeat.from_state({**previous, **state})
    changed = start or previous.get("status", "") != heartbeat.status or previous.get("stale") == "1"
    if changed and await sync_to_async(_register)(heartbeat, start):
        await events.publish_async(heartbeat.event("agent.recovered"))
    return heartbeat


def isoformat(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def _register(heartbeat: Heartbeat, start: bool) -> bool:
    """Write the registry row; True when this call ended a stale spell (exactly one caller does)."""
    values = {"status": heartbeat.status, "last_seen_at": heartbeat.last_beat}
    if heartbeat.display_name:
        values["display_name"] = heartbeat.display_name
    if start:
        values.update(stopped_at=None, stale_after_seconds=heartbeat.stale_after_seconds)
    Agent.objects.update_or_create(agent_id=heartbeat.agent_id, defaults=values)
    return bool(Agent.objects.filter(agent_id=heartbeat.agent_id, stale_since__isnull=False).update(stale_since=None))


async def stop(agent_id: str, final_status: str) -> Heartbeat | None:
    """The agent's last beat: its state keeps `final_status` (until the state's TTL) and it is no
    longer active or stale."""
    redis = get_async_redis()
    key = state_key(agent_id)
    pipe = redis.pipeline(transaction=False)
    pipe.exists(key)
    pipe.hset(key, mapping={"status": final_status, "last_beat": repr(time.time()), "stale": "0", "stopped": "1"})
    pipe.zrem(LAST_BEATS, agent_id)
    pipe.hgetall(key)
    existed, *_, raw = await pipe.execute()
    if not existed:
        await redis.delete(key)
        return None
    heartbeat = Heartbeat.from_redis(raw)
    await sync_to_async(_record_stop)(heartbeat)
    await events.publish_async(heartbeat.event("agent.stopped"))
    return heartbeat


def _record_stop(heartbeat: Heartbeat) -> None:
    Agent.objects.filter(agent_id=heartbeat.agent_id).update(
        status=heartbeat.status, last_seen_at=heartbeat.last_beat, stopped_at=heartbeat.last_beat, stale_since=None
    )


def states(agent_ids: list[str]) -> dict[str, Heartbeat]:
    """The live state of each of `agent_ids` that has one (for the admin)."""
    pipe = get_redis().pipeline(transaction=False)
    for agent_id in agent_ids:
        pipe.hgetall(state_key(agent_id))
    return {agent_id: Heartbeat.from_redis(raw) for agent_id, raw in zip(agent_ids, pipe.execute(), strict=True) if raw}


async def status(agent_id: str) -> Heartbeat | None:
    raw = await get_async_redis().hgetall(state_key(agent_id))
    return Heartbeat.from_redis(raw) if raw else None


def _beating() -> list[tuple[Heartbeat, float]]:
    """Every agent that has not stopped, with seconds since its last beat."""
    redis = get_redis()
    pipe = redis.pipeline(transaction=False)
    for agent_id in redis.zrange(LAST_BEATS, 0, -1):
        pipe.hgetall(state_key(agent_id.decode()))
    now = time.time()
    return [(h, now - h.last_beat.timestamp()) for h in map(Heartbeat.from_redis, filter(None, pipe.execute()))]


def threshold_of(heartbeat: Heartbeat, threshold: float | None) -> float:
    """`threshold` if given, else the agent's own, else the server's default."""
    return threshold or heartbeat.stale_after_seconds or settings.HEARTBEAT_STALE_SECONDS


def active(threshold: float | None = None) -> list[Heartbeat]:
    """Agents that beat within their threshold, most recent first."""
    beating = [h for h, silent in _beating() if silent <= threshold_of(h, threshold)]
    return sorted(beating, key=lambda h: h.last_beat, reverse=True)


def stale(threshold: float | None = None) -> list[Heartbeat]:
    """Agents that have not stopped but are silent past their threshold, longest silent first."""
    silent = [h for h, silent in _beating() if silent > threshold_of(h, threshold)]
    return sorted(silent, key=lambda h: h.last_beat)


def sweep() -> list[str]:
    """Record the agents that went stale since the last sweep and announce them (`agent.stale`);
    returns their ids. Each transition is announced once, however many sweeps run at once or die
    half-way (see _mark_silent_stale). An agent whose live state is gone (Redis lost it) is judged
    by its registry row. Agents whose live state expired (AGENT_STATE_TTL after their last beat)
    leave the last-beat set: only their rows remember them."""
    get_redis().zremrangebyscore(LAST_BEATS, "-inf", time.time() - settings.AGENT_STATE_TTL)
    marked = [h.agent_id for h in stale() if not h.stale and _mark_silent_stale(h)]
    marked_lost = [agent for agent in _silent_without_state() if _mark_stale(agent.agent_id, timezone.now())]
    events.publish(*(events.Event("agent.stale", _row_data(agent)) for agent in marked_lost))
    return marked + [agent.agent_id for agent in marked_lost]


def _mark_silent_stale(heartbeat: Heartbeat) -> bool:
    """Mark an agent the sweep found silent as stale, in its row and its live state, and announce
    it; unless it beat since the sweep read its state: then nothing changes. The live state is
    marked and the event published in one Redis transaction, watched against a beat and against
    another sweep: whichever sweep's transaction finds the live state unmarked announces it, once.
    A beat either lands before (and the mark is undone) or sees the mark (and announces the
    recovery after the stale event). The row is marked first, also when it already holds this
    spell's mark: a sweep killed between the row and the live state leaves the announcement to
    the next sweep."""
    since = heartbeat.last_beat + timedelta(seconds=threshold_of(heartbeat, None))
    unmarked = Q(stale_since__isnull=True) | Q(stale_since=since)
    if not Agent.objects.filter(unmarked, agent_id=heartbeat.agent_id, stopped_at__isnull=True).update(stale_since=since):
        return False  # not registered, stopped, or stale since before this spell
    key = state_key(heartbeat.agent_id)
    with get_redis().pipeline() as pipe:
        for _ in range(MARK_TRIES):
            try:
                pipe.watch(key)
                last_beat, stale = pipe.hmget(key, "last_beat", "stale")
                if last_beat is None or abs(float(last_beat) - heartbeat.last_beat.timestamp()) > 1e-5:
                    # It beat (or its state expired) meanwhile: not stale after all.
                    Agent.objects.filter(agent_id=heartbeat.agent_id, stale_since=since).update(stale_since=None)
                    return False
                if stale == b"1":
                    return False  # another sweep announced it
                pipe.multi()
                pipe.hset(key, "stale", "1")
                heartbeat.stale = True
                published = events.queue_publish(pipe, [heartbeat.event("agent.stale")])
                replies = pipe.execute()
                break
            except WatchError:  # the state changed before the transaction: look again
                pipe.reset()
        else:
            return False  # still changing: the next sweep looks again
    events.announce_new_types_now(get_redis(), replies[published])
    return True


def _mark_stale(agent_id: str, since: datetime) -> bool:
    not_yet_stale = Agent.objects.filter(agent_id=agent_id, stale_since__isnull=True, stopped_at__isnull=True)
    return bool(not_yet_stale.update(stale_since=since))


def _silent_without_state() -> list[Agent]:
    """Registered agents, neither stopped nor stale, silent past their threshold, and unknown to
    Redis: their live state is gone, so `stale()` cannot see them."""
    now = timezone.now()
    candidates = [
        agent
        for agent in Agent.objects.filter(stopped_at__isnull=True, stale_since__isnull=True, last_seen_at__isnull=False)
        if (now - agent.last_seen_at).total_seconds() > (agent.stale_after_seconds or settings.HEARTBEAT_STALE_SECONDS)
    ]
    if not candidates:
        return []
    scores = get_redis().zmscore(LAST_BEATS, [agent.agent_id for agent in candidates])
    return [agent for agent, score in zip(candidates, scores, strict=True) if score is None]


def _row_data(agent: Agent) -> dict[str, Any]:
    return {
        "agent_id": agent.agent_id,
        "display_name": agent.display_name or None,
        "status": agent.status,
        "last_beat": agent.last_seen_at.isoformat(),
        "stale": True,
    }


def sync_registry() -> int:
    """Copy the last beats since the previous sync into the registry rows; returns how many."""
    redis = get_redis()
    now = time.time()
    # Overlapping the previous sync: a beat stamped just before it may have been stored just after.
    since = float(redis.get(REGISTRY_SYNCED_UNTIL) or 0) - REGISTRY_SYNC_OVERLAP_SECONDS
    beats = redis.zrangebyscore(LAST_BEATS, since, now, withscores=True)
    last_seen = {agent_id.decode(): datetime.fromtimestamp(score, UTC) for agent_id, score in beats}
    synced = Agent.objects.record_last_seen(last_seen)
    redis.set(REGISTRY_SYNCED_UNTIL, repr(now))
    return synced
