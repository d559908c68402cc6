"""The heartbeat API. Async views: a beat is a Redis round trip or two and holds no thread."""

from __future__ import annotations

from rest_framework import exceptions

from coordination import heartbeats
from coordination.schemas import BeatIn, StartIn, StopIn
from core.api import async_endpoint, json_body
from core.permissions import ensure_key_may_act_as


def threshold_param(request) -> float | None:
    raw = request.GET.get("threshold_seconds")
    try:
        value = float(raw) if raw else None
    except ValueError:
        value = -1.0
    if value is not None and not 0 < value <= 86_400:
        raise exceptions.ValidationError({"threshold_seconds": ["Seconds, more than 0 and at most 86400."]})
    return value


@async_endpoint({"POST": "coordination:write"})
async def start(request, key, agent_id: str) -> dict:
    ensure_key_may_act_as(key, agent_id)
    body = json_body(request, StartIn)
    fields = {"metadata": body.metadata, "display_name": body.display_name, "stale_after": body.stale_after_seconds}
    return (await heartbeats.beat(agent_id, {"status": "running", **fields}, start=True)).to_dict()


@async_endpoint({"POST": "coordination:write"})
async def beat(request, key, agent_id: str) -> dict:
    ensure_key_may_act_as(key, agent_id)
    return (await heartbeats.beat(agent_id, json_body(request, BeatIn).model_dump())).to_dict()


@async_endpoint({"POST": "coordination:write"})
async def stop(request, key, agent_id: str) -> dict:
    ensure_key_may_act_as(key, agent_id)
    stopped = await heartbeats.stop(agent_id, json_body(request, StopIn).final_status)
    if stopped is None:
        raise exceptions.NotFound(f"Agent '{agent_id}' has no heartbeat to stop.")
    return stopped.to_dict()


@async_endpoint({"GET": "coordination:read"})
async def status(request, key, agent_id: str) -> dict:
    found = await heartbeats.status(agent_id)
    if found is None:
        raise exceptions.NotFound(f"Agent '{agent_id}' has no heartbeat.")
    return found.to_dict()


@async_endpoint({"GET": "coordination:read"})
async def active(request, key) -> list:
    return [h.to_dict() for h in await heartbeats.active(threshold_param(request))]


@async_endpoint({"GET": "coordination:read"})
async def stale(request, key) -> list:
    return [h.to_dict() for h in await heartbeats.stale(threshold_param(request))]
