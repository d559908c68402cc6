"""The approvals API. Agents ask and wait (async: a wait holds no thread); people decide."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import JsonResponse
from rest_framework import exceptions

from approvals import selectors, services
from approvals.models import DECIDE_PERMISSION, ApprovalRequest, ApprovalStatus
from approvals.schemas import ApprovalIn, DecisionIn, WaitIn
from core import quotas
from core.api import async_endpoint, bounded_int
from core.overload import exempt_from_shedding
from core.permissions import resolve_agent


async def _find(key, request_id: str) -> ApprovalRequest:
    """The request, if the key may act as its agent (404 otherwise: others' requests stay unseen)."""
    found = await ApprovalRequest.objects.filter(request_id=request_id).afirst()
    if found is None or (key is not None and not key.may_act_as(found.agent_id)):
        raise exceptions.NotFound(f"No approval request '{request_id}'.")
    return found


@async_endpoint({"GET": "approvals:read", "POST": "approvals:request"}, {"POST": ApprovalIn})
async def approval_list(request, key, body: ApprovalIn | None = None):
    """POST: ask for approval (201 with the request). GET: requests, newest first, filtered by
    `status` (default pending), `approval_type`, `agent_id`; a key sees only its agents'."""
    if request.method == "POST":
        agent_id = resolve_agent(key, body.agent_id, "agent_id")
        timeout = body.timeout_seconds or settings.APPROVAL_DEFAULT_TIMEOUT
        # The context goes into every event of the request (Redis Streams, the live feeds, forwarding)
        # and every notification: a key's is bounded as a signal's payload is.
        await quotas.refuse_if_larger("approval_context_too_large", key, body.context)
        # Each request notifies the reviewers (mail, Slack): a key may send so many a minute.
        await quotas.count_in_window("approval_requests_per_key", key, settings.APPROVAL_REQUESTS_PER_MINUTE, 60)
        created = await sync_to_async(services.create)(agent_id, body.approval_type, body.context, timeout)
        return JsonResponse(created.as_dict(), status=201)
    status = request.GET.get("status", ApprovalStatus.PENDING)
    if status not in ApprovalStatus.values:
        raise exceptions.ValidationError({"status": [f"One of {', '.join(ApprovalStatus.values)}."]})
    # Pending ones past their timeout are about to expire: they wait for nobody.
    requests = ApprovalRequest.objects
    found = requests.waiting() if status == ApprovalStatus.PENDING else requests.filter(status=status)
    for name in ("approval_type", "agent_id"):
        if request.GET.get(name):
            found = found.filter(**{name: request.GET[name]})
    if key is not None and key.sole_agent:
        found = found.filter(agent_id=key.sole_agent)
    limit = bounded_int(request.GET, "limit", 100, 1, 1000)
    rows = [row async for row in found[: limit * 4 if key is not None else limit]]
    return [row.as_dict() for row in rows if key is None or key.may_act_as(row.agent_id)][:limit]


@async_endpoint({"GET": "approvals:read"})
async def approval_detail(request, key, request_id: str) -> dict:
    """One request, with its decision once there is one."""
    return (await _find(key, request_id)).as_dict()


@exempt_from_shedding
@async_endpoint({"POST": "approvals:request"}, {"POST": WaitIn})
async def approval_wait(request, key, request_id: str, body: WaitIn) -> dict:
    """The decision as soon as a person makes it, or at `timeout` (status still `pending`), or at
    the request's expiry (`expired`, approved false)."""
    found = await _find(key, request_id)
    timeout = min(body.timeout, settings.LONG_WAIT_MAX_SECONDS)
    async with quotas.held(key, timeout):
        return (await services.wait(found, timeout)).as_dict()


@async_endpoint({"POST": "approvals:request"})
async def approval_cancel(request, key, request_id: str) -> dict:
    """The agent withdraws its pending request."""
    found = await _find(key, request_id)
    if not await sync_to_async(services.cancel)(found):
        raise exceptions.ValidationError({"status": [f"The request is {found.status}, no longer pending."]})
    return found.as_dict()


@async_endpoint({"POST": "approvals:request"}, {"POST": DecisionIn}, session_permissions={"POST": (DECIDE_PERMISSION,)})
async def approval_decide(request, key, request_id: str, body: DecisionIn) -> dict:
    """A person's decision: needs a session of a user with the decide permission."""
    if key is not None:
        raise exceptions.PermissionDenied(
            "Agents cannot decide approvals: a person with the approve permission does, in the admin.",
            code="agents_cannot_decide",
        )
    user = await request.auser()
    found = await _find(key, request_id)
    if not await sync_to_async(selectors.allowed_to_decide)(user, found):
        raise exceptions.PermissionDenied("You may not decide this request.", code="may_not_decide")
    if not await sync_to_async(services.decide)(found, body.approved, user, body.reason):
        raise exceptions.ValidationError({"status": [f"The request is {found.status}, no longer pending."]})
    return found.as_dict()


@async_endpoint({"POST": "approvals:request"})
async def clear_expired(request, key) -> dict:
    """Delete expired requests (a key: of its agents); the SDK's clear_expired_requests."""
    found = ApprovalRequest.objects.all()
    if key is not None:
        agents = [agent async for agent in found.values_list("agent_id", flat=True).distinct()]
        found = found.filter(agent_id__in=[agent for agent in agents if key.may_act_as(agent)])
    return {"cleared": await sync_to_async(services.clear_expired)(found)}
