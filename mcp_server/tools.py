"""The MCP tools: what an agent can do through the Model Context Protocol.

Each tool does what its REST endpoint does, through the same services, schemas, quotas and
checks: the key a request came with (mcp_server.http sets it) acts only as its agents and within
its scopes. A refusal is a tool error whose text says what was wrong (the API's error code and
message), and nothing is stored. The waits are async: a waiting tool call costs a coroutine.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from asgiref.sync import sync_to_async
from django.conf import settings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field
from rest_framework import exceptions

from approvals import selectors as approvals
from approvals import services as approval_services
from approvals.schemas import ApprovalIn
from coordination import heartbeats, signals
from coordination.schemas import BeatIn, ReceiveIn, SignalIn
from coordination.views import ensure_may_beat
from core import quotas
from core.api import describe, failure_response, validate
from core.db import give_back_connections, start_request
from core.models import AgentKey
from core.permissions import resolve_agent
from runs import services as runs
from runs.schemas import RunIn

# The agent key of the HTTP request being served (mcp_server.http sets it for each request).
acting_key: contextvars.ContextVar[AgentKey] = contextvars.ContextVar("mcp_acting_key")

server = MCPServer(
    "telemetry",
    instructions="Telemetry and coordination for agents: ask a person for approval and wait for the decision, "
    "signal other agents and wait for their signals, send heartbeats, record runs and their events.",
)

AgentId = Annotated[str | None, Field(description="The agent to act as; default: the key's only agent")]


def key_for(scope: str) -> AgentKey:
    """The request's key, if it holds `scope`."""
    key = acting_key.get()
    if not key.has_scope(scope):
        raise exceptions.PermissionDenied(f"This key lacks the '{scope}' scope.", code="missing_scope")
    return key


def refusal(exc: Exception) -> ToolError | None:
    """What the model reads for an API refusal (the REST API's error code, message and fields)."""
    if isinstance(exc, exceptions.APIException):
        error = describe(exc)["error"]
    elif (failure := failure_response(exc)) is not None:
        error = json.loads(failure.content)["error"]
    else:
        return None
    fields = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in error.get("fields", {}).items())
    return ToolError(f"{error['code']}: {error['message']}" + (f" ({fields})" if fields else ""))


@contextlib.asynccontextmanager
async def answering():
    """Around a tool's work: API refusals become tool errors, and the database connections its
    sync work opened are given back (as at the end of a request)."""
    start_request()
    try:
        yield
    except Exception as exc:
        if (error := refusal(exc)) is None:
            raise
        raise error from None
    finally:
        await give_back_connections()


@server.tool()
async def request_approval(
    approval_type: Annotated[str, Field(description="What needs sign-off, e.g. deploy or spend (letters, digits, _ . : -)")],
    context: Annotated[
        dict[str, Any] | None, Field(description="What the reviewer needs to decide: what, why, the diff, the amount")
    ] = None,
    timeout_seconds: Annotated[
        float | None, Field(description="Seconds until the request expires if nobody decides; default: the server's")
    ] = None,
    agent_id: AgentId = None,
    ctx: Context | None = None,
) -> dict[str, Any]:
    """Ask a person to approve an action, and wait for the decision before acting.

    Blocks until a reviewer approves or rejects the request (in the admin, chat or mail), or until
    it expires unanswered; progress notifications are sent while it waits. Returns `approved`
    (act only if true), `responder` (who decided), `reason`, `status` (approved, rejected,
    expired or cancelled) and `request_id`."""
    async with answering():
        key = key_for("approvals:request")
        body = validate(ApprovalIn, _given(approval_type=approval_type, context=context or {}, agent_id=agent_id,
                                           timeout_seconds=timeout_seconds))  # fmt: skip
        agent = resolve_agent(key, body.agent_id, "agent_id")
        timeout = body.timeout_seconds or settings.APPROVAL_DEFAULT_TIMEOUT
        await quotas.refuse_if_larger("approval_context_too_large", key, body.context)
        await quotas.count_in_window("approval_requests_per_key", key, settings.APPROVAL_REQUESTS_PER_MINUTE, 60)
        request = await sync_to_async(approval_services.create)(agent, body.approval_type, body.context, timeout)
        started = time.monotonic()
        while request.is_pending:
            # In steps: each holds one of the key's waits for a bounded lease, and ends with a progress notification.
            step = min(settings.MCP_PROGRESS_SECONDS, settings.LONG_WAIT_MAX_SECONDS)
            async with quotas.held(key, step):
                request = await approval_services.wait(request, step)
            if request.is_pending and ctx is not None:
                waited = time.monotonic() - started
                await ctx.report_progress(waited, timeout, f"Waiting for a reviewer: {waited:.0f} s of {timeout:g} s")
        answer = request.response()
        return {name: answer[name] for name in ("approved", "responder", "reason", "status", "request_id")}


@server.tool()
async def list_pending_approvals(
    approval_type: Annotated[str, Field(description="Only requests of this type; empty: every type")] = "",
    limit: Annotated[int, Field(ge=1, le=1000, description="At most this many, newest first")] = 100,
) -> list[dict[str, Any]]:
    """Approval requests of this key's agents still waiting for a person, newest first."""
    async with answering():
        key = key_for("approvals:read")
        found = approvals.waiting()
        if approval_type:
            found = found.filter(approval_type=approval_type)
        if key.sole_agent:
            found = found.filter(agent_id=key.sole_agent)
        rows = [row async for row in found[: limit * 4]]
        return [row.as_dict() for row in rows if key.may_act_as(row.agent_id)][:limit]


@server.tool()
async def send_signal(
    signal_type: Annotated[str, Field(description="What kind of message, e.g. task_ready (letters, digits, _ . : -)")],
    target_agent: Annotated[str | None, Field(description="The agent to send it to; none: broadcast to every agent")] = None,
    payload: Annotated[dict[str, Any] | None, Field(description="The message's data")] = None,
    ttl_seconds: Annotated[int | None, Field(description="Seconds the signal lives undelivered; default 60")] = None,
    source_agent: Annotated[str | None, Field(description="The sender; default: the key's only agent")] = None,
) -> dict[str, Any]:
    """Send a signal to another agent (delivered once), or to every agent (once to each)."""
    async with answering():
        key = key_for("coordination:write")
        body = validate(SignalIn, _given(signal_type=signal_type, target_agent=target_agent, payload=payload or {},
                                         ttl_seconds=ttl_seconds, source_agent=source_agent))  # fmt: skip
        source = resolve_agent(key, body.source_agent, "source_agent")
        return await signals.send(body.signal_type, source, body.target_agent, body.payload, body.ttl_seconds, agent_key=key)


@server.tool()
async def wait_for_signal(
    signal_type: Annotated[str, Field(description="Only signals of this type; empty: any type")] = "",
    source_agent: Annotated[str, Field(description="Only signals from this agent; empty: from anyone")] = "",
    timeout: Annotated[float, Field(description="Seconds to wait for one (at most the server's long-wait limit)")] = 30.0,
    consume: Annotated[bool, Field(description="False: only look, leave it for later")] = True,
    agent_id: AgentId = None,
) -> dict[str, Any]:
    """Take the oldest signal for this agent, waiting up to `timeout` seconds for one to arrive.
    Returns {"signal": ...}, or {"signal": null} when none came in time (call again to wait longer)."""
    async with answering():
        key = key_for("coordination:write")
        body = validate(ReceiveIn, _given(signal_type=signal_type, source_agent=source_agent, timeout=timeout,
                                          consume=consume, agent_id=agent_id))  # fmt: skip
        agent = resolve_agent(key, body.agent_id, "agent_id")
        timeout = min(body.timeout, settings.LONG_WAIT_MAX_SECONDS)
        async with quotas.held(key, timeout):
            found = await signals.receive(agent, body.signal_type, body.source_agent, body.consume, timeout)
        return {"signal": found}


@server.tool()
async def heartbeat(
    status: Annotated[str, Field(description="What the agent is doing now, e.g. running, idle, blocked")] = "running",
    progress: Annotated[float, Field(description="How far along: a fraction (0-1) or a percentage")] = 0.0,
    current_task: Annotated[str, Field(description="The task at hand, in a few words")] = "",
    agent_id: AgentId = None,
) -> dict[str, Any]:
    """Tell the server this agent is alive (its first beat registers it). Agents silent past their
    threshold are reported stale."""
    async with answering():
        key = key_for("coordination:write")
        body = validate(BeatIn, {"status": status, "progress": progress, "current_task": current_task})
        agent = resolve_agent(key, agent_id, "agent_id")
        ensure_may_beat(key, agent)
        return (await heartbeats.beat(agent, body.model_dump(), None, agent_key=key)).to_dict()


@server.tool()
async def active_agents(
    threshold_seconds: Annotated[
        float | None, Field(gt=0, le=86_400, description="Beating within this many seconds; default: each agent's threshold")
    ] = None,
) -> list[dict[str, Any]]:
    """Agents alive now (beating within their threshold), most recent first."""
    async with answering():
        key_for("coordination:read")
        return [beat.to_dict() for beat in await sync_to_async(heartbeats.active)(threshold_seconds)]


@server.tool()
async def start_run(
    job_type: Annotated[str, Field(description="What kind of work this run does, e.g. review or crawl")],
    input_summary: Annotated[str, Field(description="What the run works on, in a line")] = "",
    run_id: Annotated[str | None, Field(description="Your id for the run; default: one is made")] = None,
    agent_id: AgentId = None,
) -> dict[str, Any]:
    """Record that a run of work starts. Returns its `event_id`: pass it to log_event and end_run."""
    async with answering():
        key = key_for("runs:write")
        agent = resolve_agent(key, agent_id, "agent_id")
        now = datetime.now(UTC)
        data = _given(event_id=str(uuid.uuid4()), run_id=run_id or f"{now:%Y%m%dT%H%M%SZ}-{agent}-{uuid.uuid4().hex[:8]}",
                      agent_name=agent, job_type=job_type, start_time=now.isoformat(), input_summary=input_summary)  # fmt: skip
        run = validate(RunIn, data)
        await runs.run_creates.write(run)  # its event_id is new: created
        return {"event_id": run.event_id, "run_id": run.run_id, "status": run.status}


@server.tool()
async def log_event(
    event_id: Annotated[str, Field(description="The run's event_id, as start_run returned it")],
    event_type: Annotated[str, Field(description="What happened, e.g. file_fetched or tool_called")],
    payload: Annotated[dict[str, Any] | None, Field(description="Details of the event")] = None,
) -> dict[str, Any]:
    """Record an event inside a run."""
    async with answering():
        key = key_for("runs:write")
        item = {"run_event_id": event_id, "event_type": event_type, "payload": payload}
        return _one(await sync_to_async(runs.ingest_events)([item], key.may_act_as))


@server.tool()
async def end_run(
    event_id: Annotated[str, Field(description="The run's event_id, as start_run returned it")],
    status: Annotated[str, Field(description="How it ended: success, failed, partial, timeout or cancelled")] = "success",
    output_summary: Annotated[str, Field(description="What the run produced, in a line")] = "",
    error_summary: Annotated[str, Field(description="What went wrong, if it failed")] = "",
    items_succeeded: Annotated[int, Field(description="Items done")] = 0,
    items_failed: Annotated[int, Field(description="Items that failed")] = 0,
) -> dict[str, Any]:
    """Record how a run ended (its duration is worked out)."""
    async with answering():
        key = key_for("runs:write")
        item = _given(event_id=event_id, status=status, end_time=datetime.now(UTC).isoformat(), output_summary=output_summary,
                      error_summary=error_summary, items_succeeded=items_succeeded, items_failed=items_failed)  # fmt: skip
        return _one(await sync_to_async(runs.end_runs)([item], key.may_act_as))


def _given(**fields) -> dict[str, Any]:
    """The arguments that were given (None: left to the schema's default)."""
    return {name: value for name, value in fields.items() if value is not None}


def _one(batch) -> dict[str, Any]:
    """The result of a batch of one item, or its refusal as a tool error."""
    result = batch.results[0]
    if result["status"] == "rejected":
        raise ToolError(f"{result['error']['code']}: {' '.join(batch.errors())}")
    return result
