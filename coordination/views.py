"""The heartbeat and signal API. Async views: a beat or a signal is a Redis round trip or two,
and a wait holds no thread."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import JsonResponse
from rest_framework import exceptions

from coordination import heartbeats, signals
from coordination.models import Agent
from coordination.schemas import BeatIn, ReceiveIn, SignalIn, StartIn, StopIn
from core import quotas
from core.api import async_endpoint
from core.overload import exempt_from_shedding
from core.permissions import ensure_key_may_act_as, resolve_agent

AGENT_ID_MAX_LENGTH = Agent._meta.get_field("agent_id").max_length


def ensure_may_beat(key, agent_id: str) -> None:
    """The key may act as the agent, and its id fits the registry row (Agent.agent_id): a longer
    one would be refused there only after the beat was recorded in Redis."""
    if len(agent_id) > AGENT_ID_MAX_LENGTH:
        raise exceptions.ValidationError({"agent_id": [f"At most {AGENT_ID_MAX_LENGTH} characters."]})
    ensure_key_may_act_as(key, agent_id)


def threshold_param(request) -> float | None:
    raw = request.GET.get("threshold_seconds")
    try:
        value = float(raw) if raw else None
    except ValueError:
        value = -1.0
    if value is not None and not 0 < value <= 86_400:
        raise exceptions.ValidationError({"threshold_seconds": ["Seconds, more than 0 and at most 86400."]})
    return value


@async_endpoint({"POST": "coordination:write"}, {"POST": StartIn}, key_checked_in_script=frozenset({"POST"}))
async def start(request, key, agent_id: str, body: StartIn, key_check) -> dict:
    """(Re)start the agent's heartbeat: its live state begins afresh; publishes agent.started."""
    ensure_may_beat(key, agent_id)
    # The metadata lives in the agent's state for a day and goes into every agent.started event.
    await quotas.refuse_if_larger("heartbeat_metadata_too_large", key, body.metadata)
    fields = {"metadata": body.metadata, "display_name": body.display_name, "stale_after": body.stale_after_seconds}
    return (await heartbeats.beat(agent_id, {"status": "running", **fields}, key_check, start=True, agent_key=key)).to_dict()


@async_endpoint({"POST": "coordination:write"}, {"POST": BeatIn}, key_checked_in_script=frozenset({"POST"}))
async def beat(request, key, agent_id: str, body: BeatIn, key_check) -> dict:
    """One heartbeat; an agent's first registers it."""
    ensure_may_beat(key, agent_id)
    return (await heartbeats.beat(agent_id, body.model_dump(), key_check, agent_key=key)).to_dict()


@async_endpoint({"POST": "coordination:write"}, {"POST": StopIn})
async def stop(request, key, agent_id: str, body: StopIn) -> dict:
    """The agent's last beat, with its final status; publishes agent.stopped."""
    ensure_may_beat(key, agent_id)
    stopped = await heartbeats.stop(agent_id, body.final_status)
    if stopped is None:
        raise exceptions.NotFound(f"Agent '{agent_id}' has no heartbeat to stop.")
    return stopped.to_dict()


@async_endpoint({"GET": "coordination:read"})
async def status(request, key, agent_id: str) -> dict:
    """The agent's live state, with `alive` (beating within its threshold and not stopped)."""
    found = await heartbeats.status(agent_id)
    if found is None:
        raise exceptions.NotFound(f"Agent '{agent_id}' has no heartbeat.")
    return {**found.to_dict(), "alive": found.alive()}


@async_endpoint({"GET": "coordination:read"})
async def active(request, key) -> list:
    """Agents beating within their threshold (`?threshold_seconds=` overrides it), most recent first."""
    return [h.to_dict() for h in await sync_to_async(heartbeats.active)(threshold_param(request))]


@async_endpoint({"GET": "coordination:read"})
async def stale(request, key) -> list:
    """Agents silent past their threshold (`?threshold_seconds=` overrides it), longest silent first."""
    return [h.to_dict() for h in await sync_to_async(heartbeats.stale)(threshold_param(request))]


@async_endpoint(
    {"GET": "coordination:read", "POST": "coordination:write", "DELETE": "coordination:write"},
    {"POST": SignalIn},
    key_checked_in_script=frozenset({"POST"}),
)
async def signal_list(request, key, body: SignalIn | None = None, key_check=None):
    """GET: the signals an agent would receive (a look: nothing is taken). POST: send one, to
    `target_agent` or, when that is null, to every agent. DELETE: drop an agent's signals."""
    if request.method == "POST":
        source = resolve_agent(key, body.source_agent, "source_agent")
        sent = await signals.send(
            body.signal_type, source, body.target_agent, body.payload, body.ttl_seconds, key_check, agent_key=key
        )
        return JsonResponse(sent, status=201)
    agent_id = resolve_agent(key, request.GET.get("agent_id"), "agent_id")
    signal_type = request.GET.get("signal_type", "")
    if request.method == "DELETE":
        return {"cleared": await signals.clear(agent_id, signal_type)}
    return await signals.pending(agent_id, signal_type)


@exempt_from_shedding
@async_endpoint({"POST": "coordination:write"}, {"POST": ReceiveIn})
async def signal_receive(request, key, body: ReceiveIn) -> dict:
    """The oldest matching signal for the agent, or null; with `timeout`, waits for one to arrive
    (at most LONG_WAIT_MAX_SECONDS; call again to wait longer)."""
    agent_id = resolve_agent(key, body.agent_id, "agent_id")
    timeout = min(body.timeout, settings.LONG_WAIT_MAX_SECONDS)
    async with quotas.held(key, timeout):
        found = await signals.receive(agent_id, body.signal_type, body.source_agent, body.consume, timeout)
    return {"signal": found}
