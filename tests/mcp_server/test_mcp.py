"""The MCP server end to end: the `mcp` SDK's own client against the real server (uvicorn, two
worker processes, stateless streamable HTTP at /mcp), and through the SDK's `telemetry-mcp` stdio
relay. A reviewer decides in the admin (an HTTP session, as a browser's) and the blocked tool call
returns the decision; keys are checked as the REST API checks them; bad input stores nothing."""

from __future__ import annotations

import asyncio
import os
import sys
import tomllib
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import httpx2
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from approvals import services as approval_services
from approvals.models import ApprovalRequest
from core.db import close_connections
from core.quotas import SLOTS_PREFIX
from core.redis import get_redis
from runs.models import Run
from tests.conftest import database_url, make_key
from tests.services import ROOT, asgi_server, production_env

pytestmark = pytest.mark.django_db(transaction=True)

TOOLS = {"request_approval", "list_pending_approvals", "send_signal", "wait_for_signal", "heartbeat", "active_agents",
         "start_run", "log_event", "end_run"}  # fmt: skip


@pytest.fixture(scope="module")
def server(django_db_setup, static_root) -> str:
    """One real server for the module: two web processes behind one port, as deployed. Progress
    every 0.2 s; plain-HTTP session cookies so an HTTP client can log in to the admin."""
    env = production_env(DATABASE_URL=database_url(), TELEMETRY_VAR_DIR=static_root, MCP_PROGRESS_SECONDS="0.2",
                         SESSION_COOKIE_SECURE="false", CSRF_COOKIE_SECURE="false")  # fmt: skip
    with asgi_server(env, workers=2) as base:
        yield base


@pytest.fixture
def reviewer(django_user_model):
    user = django_user_model.objects.create_user("rita", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["decide_approvalrequest", "view_approvalrequest"]))
    return user


@asynccontextmanager
async def mcp(base: str, raw_key: str):
    """The SDK's client on /mcp with `raw_key` (a call answers within 30 s, or fails)."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {raw_key}"}, timeout=60)
    async with http, Client(streamable_http_client(f"{base}/mcp", http_client=http), read_timeout_seconds=30) as client:
        yield client


def run(scenario):
    """asyncio.run, then close the database connection its ORM calls opened (in asgiref's thread)."""

    async def closing():
        try:
            return await scenario
        finally:
            await sync_to_async(close_connections)()

    return asyncio.run(closing())


def error_of(result) -> str:
    assert result.is_error, result
    return result.content[0].text


async def refusal(client: Client, tool: str, **arguments) -> str:
    """The error text of a tool call that must fail."""
    return error_of(await client.call_tool(tool, arguments))


@asynccontextmanager
async def running(call):
    """`call` in a task (yielded), cancelled if the block ends before it does."""
    task = asyncio.create_task(call)
    try:
        yield task
    finally:
        task.cancel()


async def waited(call, progress: list) -> None:
    """Until `call` (a task calling request_approval) has sent two progress notifications."""
    for _ in range(600):
        if len(progress) >= 2 or call.done():
            return
        await asyncio.sleep(0.05)


async def decide_in_admin(base: str, request_id: str, decision: str, reason: str) -> None:
    """Log in to the admin as rita and decide on the request's page, as the form there does."""
    pk = (await ApprovalRequest.objects.aget(request_id=request_id)).pk
    async with httpx.AsyncClient(base_url=base) as browser:
        await browser.get("/admin/login/")
        login = {"username": "rita", "password": "pw", "csrfmiddlewaretoken": browser.cookies["csrftoken"], "next": "/admin/"}
        assert (await browser.post("/admin/login/", data=login)).status_code == 302
        form = {"decision": decision, "reason": reason, "csrfmiddlewaretoken": browser.cookies["csrftoken"]}
        answer = await browser.post(f"/admin/approvals/approvalrequest/{pk}/decide/", data=form)
        assert answer.status_code == 302, answer.text


def test_a_decision_in_the_admin_unblocks_request_approval_which_reports_progress_meanwhile(server, reviewer):
    raw_key = make_key("deployer")[1]

    async def scenario():
        async with mcp(server, raw_key) as client:
            assert {tool.name for tool in (await client.list_tools()).tools} == TOOLS
            progress = []
            arguments = {"approval_type": "deploy", "context": {"service": "search"}, "timeout_seconds": 600}
            asking = client.call_tool("request_approval", arguments, progress_callback=lambda *p: progress.append(p))
            async with running(asking) as call:
                await waited(call, progress)
                assert not call.done() and progress[-1][1] == 600 and "Waiting for a reviewer" in progress[-1][2]
                pending = (await client.call_tool("list_pending_approvals", {})).structured_content["result"]
                assert [(p["approval_type"], p["agent_id"], p["context"]) for p in pending] == [
                    ("deploy", "deployer", arguments["context"])
                ]
                await decide_in_admin(server, pending[0]["request_id"], "approve", "ship it")
                result = (await asyncio.wait_for(call, 30)).structured_content
            assert result == {"approved": True, "responder": "rita", "reason": "ship it", "status": "approved",
                              "request_id": pending[0]["request_id"]}  # fmt: skip

            # Nobody decides: at its expiry the call returns approved=false, with the reason.
            expired = await client.call_tool("request_approval", {"approval_type": "spend", "timeout_seconds": 0.5})
            expired = expired.structured_content
            assert (expired["approved"], expired["status"], expired["responder"]) == (False, "expired", "")
            assert expired["reason"].startswith("Expired: nobody decided")

    run(scenario())


def test_signals_sent_with_a_tool_arrive_at_a_waiting_tool_call_and_runs_are_recorded(server):
    alice, (bob_key, bob) = make_key("alice")[1], make_key("bob")
    bob_waits = f"{SLOTS_PREFIX}held_waits_per_key:{bob_key.prefix}"

    async def scenario():
        async with mcp(server, alice) as sender, mcp(server, bob) as receiver:
            async with running(receiver.call_tool("wait_for_signal", {"signal_type": "task_ready", "timeout": 30})) as waiting:
                while not get_redis().zcard(bob_waits):  # until bob's call holds its wait
                    await asyncio.sleep(0.02)
                signal = {"signal_type": "task_ready", "target_agent": "bob", "payload": {"n": 1}}
                assert not (await sender.call_tool("send_signal", signal)).is_error
                signal = (await asyncio.wait_for(waiting, 30)).structured_content["signal"]
            assert (signal["source_agent"], signal["payload"]) == ("alice", {"n": 1})
            again = await receiver.call_tool("wait_for_signal", {"timeout": 0})
            assert again.structured_content == {"signal": None}  # delivered once

            assert (await sender.call_tool("heartbeat", {"current_task": "reviewing"})).structured_content["agent_id"] == "alice"
            active = (await receiver.call_tool("active_agents", {})).structured_content["result"]
            assert [agent["agent_id"] for agent in active] == ["alice"]

            run = (await sender.call_tool("start_run", {"job_type": "review", "input_summary": "PR 7"})).structured_content
            assert not (await sender.call_tool("log_event", {"event_id": run["event_id"], "event_type": "file_read"})).is_error
            ended = await sender.call_tool("end_run", {"event_id": run["event_id"], "status": "success", "items_succeeded": 3})
            assert ended.structured_content["status"] == "updated"
            # Bob's key may not act as alice: her run is not his to end.
            assert "agent_forbidden" in await refusal(receiver, "end_run", event_id=run["event_id"])
            return run["event_id"]

    stored = Run.objects.get(event_id=run(scenario()))
    assert (stored.agent_name, stored.status, stored.items_succeeded, stored.events.count()) == ("alice", "success", 3, 1)


def test_keys_are_checked_and_bad_input_is_refused_with_nothing_stored(server):
    for headers in ({}, {"Authorization": "Bearer nope.nope"}):
        refused = httpx.post(f"{server}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=headers)
        assert refused.status_code == 401 and refused.json()["error"]["code"] in ("not_authenticated", "invalid_key")
    reader = make_key("watcher", agents=["builder-*"], scopes=["coordination:read"])[1]
    builder = make_key("builders", agents=["builder-*"])[1]

    async def scenario():
        async with mcp(server, reader) as client:
            assert "missing_scope" in await refusal(client, "request_approval", approval_type="deploy", agent_id="builder-1")
            assert "missing_scope" in await refusal(client, "heartbeat", agent_id="builder-1")
        async with mcp(server, builder) as client:
            assert "agent_forbidden" in await refusal(client, "request_approval", approval_type="deploy", agent_id="deployer")
            assert "agent_forbidden" in await refusal(client, "send_signal", signal_type="go", source_agent="x")
            # A glob key names the agent it acts as.
            assert "name the agent" in await refusal(client, "request_approval", approval_type="deploy")
            mine = {"agent_id": "builder-1"}
            assert "approval_type" in await refusal(client, "request_approval", approval_type="no spaces", **mine)
            assert "timeout_seconds" in await refusal(
                client, "request_approval", approval_type="deploy", timeout_seconds=-1, **mine
            )
            assert "timeout_seconds" in await refusal(
                client, "request_approval", approval_type="deploy", timeout_seconds="soon", **mine
            )
            assert "ttl_seconds" in await refusal(
                client, "send_signal", signal_type="go", target_agent="b", ttl_seconds=0, source_agent="builder-1"
            )
            assert "run_not_found" in await refusal(client, "end_run", event_id="no-such-run")
            assert "job_type" in await refusal(client, "start_run", job_type="", **mine)
            nothing = await client.call_tool("wait_for_signal", {"agent_id": "builder-2", "timeout": 0})
            assert nothing.structured_content == {"signal": None}

    run(scenario())
    assert (ApprovalRequest.objects.count(), Run.objects.count()) == (0, 0)


def test_the_stdio_relay_installed_with_the_sdk_serves_the_same_tools(server, reviewer):
    scripts = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["telemetry-mcp"] == "telemetry_client.mcp_relay:main"
    raw_key = make_key("deployer")[1]
    env = {**os.environ, "TELEMETRY_API_URL": server, "TELEMETRY_API_KEY": raw_key, "PYTHONPATH": str(ROOT / "client")}
    relay = StdioServerParameters(command=sys.executable, args=["-m", "telemetry_client.mcp_relay"], env=env, cwd=Path.home())

    async def scenario():
        async with Client(relay, read_timeout_seconds=30) as client:
            assert {tool.name for tool in (await client.list_tools()).tools} == TOOLS
            progress = []
            asking = client.call_tool(
                "request_approval", {"approval_type": "deploy"}, progress_callback=lambda *p: progress.append(p)
            )
            async with running(asking) as call:
                await waited(call, progress)
                assert not call.done() and progress
                request = await ApprovalRequest.objects.aget(agent_id="deployer")
                assert await sync_to_async(approval_services.decide)(request, False, reviewer, "not today")
                result = (await asyncio.wait_for(call, 30)).structured_content
            assert (result["approved"], result["responder"], result["reason"]) == (False, "rita", "not today")
            assert "agent_forbidden" in error_of(await client.call_tool("heartbeat", {"agent_id": "someone-else"}))

    run(scenario())
