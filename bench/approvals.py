"""Approvals: a person's decision -> the waiting agent back, and a thousand agents waiting at once.

1. Decision -> agent back: the agent asks and waits; HOLD s later a reviewer's session decides
   (POST /api/v1/approvals/<id>/decide, the service the admin's buttons call); from the decision
   sent until the agent has it, p50/p99 over LATENCY_SAMPLES sequential requests, through HTTP (a
   held POST .../wait), through the SDK (ApprovalGate.request_approval) and through MCP (the
   `mcp` SDK's client calling the request_approval tool at /mcp: until the tool's result), beside
   raw Redis wake-ups of the same run. Target: p99 <= 100 ms.
2. WAITERS agents waiting on their requests at once on ONE web process: the latency of other
   requests while they wait, as a ratio to the same requests with nobody waiting; then each
   request is decided, one after the other as reviewers would: how many agents got their decision
   (target: all) and how long after it.
"""

from __future__ import annotations

import asyncio
import re
import resource
import tempfile
import time
from pathlib import Path

import httpx

from bench.harness import (
    HOLD,
    LATENCY_SAMPLES,
    busy_vs_quiet,
    environment,
    lone_post,
    percentiles,
    pooled,
    probe,
    raw_redis,
    sequential_wakeups,
    tally,
    threaded_wakeups,
)
from bench.ingest import agent_headers
from tests.services import asgi_server

WORKERS = 2
WAITERS = 1000
PROBES = 300
SETTLE = 2.0
SCOPES = ("approvals:request", "approvals:read", "coordination:write")
REVIEWER, PASSWORD = "bench-reviewer", "bench-password"


def reviewer_headers(base: str) -> dict:
    """The headers of a reviewer's session (logged in through the admin's form) for the API."""
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser(REVIEWER, password=PASSWORD)
    with httpx.Client(base_url=base) as http:
        form = http.get("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        login = http.post("/admin/login/", data={"username": REVIEWER, "password": PASSWORD, "csrfmiddlewaretoken": token})
        if login.status_code != 302:
            raise RuntimeError(f"the reviewer could not log in: {login.status_code}")
        cookies = {**form.cookies, **login.cookies}
    return {
        "Cookie": "; ".join(f"{name}={value}" for name, value in cookies.items()),
        "X-CSRFToken": cookies["csrftoken"],
        "Content-Type": "application/json",
    }


async def decide(reviewer: httpx.AsyncClient, request_id: str) -> str:
    response = await reviewer.post(f"/api/v1/approvals/{request_id}/decide", json={"approved": True, "reason": "bench"})
    if response.status_code != 200:
        raise RuntimeError(f"decide: {response.status_code} {response.text[:200]}")
    return request_id


def approved_id(answer: dict | None) -> str | None:
    return answer["request_id"] if answer and answer["status"] == "approved" else None


async def http_decisions(base: str, agent: dict, reviewer: dict) -> dict:
    async with (
        httpx.AsyncClient(base_url=base, headers=agent, timeout=30) as waiter,
        httpx.AsyncClient(base_url=base, headers=reviewer, timeout=30) as person,
    ):
        asked: asyncio.Queue[str] = asyncio.Queue()

        async def block():
            created = await waiter.post("/api/v1/approvals", json={"approval_type": "deploy", "timeout_seconds": 60})
            request_id = created.json()["request_id"]
            await asked.put(request_id)
            return approved_id((await waiter.post(f"/api/v1/approvals/{request_id}/wait", json={"timeout": 10})).json())

        return percentiles(await sequential_wakeups(block, lambda request_id: decide(person, request_id), asked.get))


def sdk_decisions(base: str, agent_key: str, reviewer: dict) -> dict:
    from telemetry_client import ApprovalGate, TelemetryClient, TelemetryConfig

    with tempfile.TemporaryDirectory() as spool:
        memory = TelemetryClient(TelemetryConfig(api_url=base, api_key=agent_key, spool_dir=Path(spool)))
        gate = ApprovalGate(memory)

        def block():
            response = gate.request_approval("deploy", {"bench": True}, timeout=60)
            return response.request_id if response.approved else None

        def asked() -> str:
            deadline = time.monotonic() + 10
            while not (pending := gate.get_pending_approvals("deploy")):
                if time.monotonic() > deadline:
                    raise RuntimeError("the SDK's request never showed as pending")
                time.sleep(0.001)
            return pending[0].request_id

        def wake(request_id: str) -> str:
            response = person.post(f"/api/v1/approvals/{request_id}/decide", json={"approved": True, "reason": "bench"})
            if response.status_code != 200:
                raise RuntimeError(f"decide: {response.status_code} {response.text[:200]}")
            return request_id

        with httpx.Client(base_url=base, headers=reviewer) as person:
            latencies = threaded_wakeups(block, wake, asked)
        memory.close(timeout=1)
    return percentiles(latencies)


async def mcp_decisions(base: str, agent: dict, reviewer: dict) -> dict:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx2.AsyncClient(headers={"Authorization": agent["Authorization"]}, timeout=30) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client,
        httpx.AsyncClient(base_url=base, headers=agent, timeout=30) as looker,
        httpx.AsyncClient(base_url=base, headers=reviewer, timeout=30) as person,
    ):

        async def block():
            result = await client.call_tool("request_approval", {"approval_type": "mcp", "timeout_seconds": 60})
            return approved_id(result.structured_content)

        async def asked() -> str:
            deadline = time.monotonic() + 10
            while not (pending := (await looker.get("/api/v1/approvals", params={"approval_type": "mcp"})).json()):
                if time.monotonic() > deadline:
                    raise RuntimeError("the tool's request never showed as pending")
                await asyncio.sleep(0.001)
            return pending[0]["request_id"]

        return percentiles(await sequential_wakeups(block, lambda request_id: decide(person, request_id), asked))


async def many_waiters(base: str, crowd: dict, source: dict, reviewer: dict) -> dict:
    async with (
        httpx.AsyncClient(base_url=base, headers=source, timeout=60) as agent,
        httpx.AsyncClient(base_url=base, headers=reviewer, timeout=60) as person,
    ):
        own = (await agent.post("/api/v1/approvals", json={"approval_type": "probe", "timeout_seconds": 600})).json()
        kinds = {
            "heartbeat": lambda: agent.post("/api/v1/agents/source/heartbeat", json={"status": "running"}),
            "approval_detail": lambda: agent.get(f"/api/v1/approvals/{own['request_id']}"),
        }
        await probe(kinds, PROBES)  # warm up
        quiet = await probe(kinds, PROBES)
        request_ids = []
        for index in range(WAITERS):
            body = {"approval_type": "deploy", "agent_id": f"agent-{index}", "timeout_seconds": 600}
            status, created = await lone_post(base, "/api/v1/approvals", crowd, body)
            if status != 201:
                raise RuntimeError(f"asking: {status} {created}")
            request_ids.append(created["request_id"])

        async def wait(request_id: str):
            try:
                status, answer = await lone_post(base, f"/api/v1/approvals/{request_id}/wait", crowd, {"timeout": 55})
            except (OSError, ValueError) as exc:
                return time.perf_counter(), type(exc).__name__, None
            return time.perf_counter(), status, approved_id(answer) if status == 200 else None

        waiters = {request_id: asyncio.create_task(wait(request_id)) for request_id in request_ids}
        opened = time.perf_counter()
        # Settled once a request taking the waits' path (their checks share the database thread)
        # is answered about as fast as with nobody waiting, ten times running.
        fast, limit = 0, 3 * pooled(quiet)["approval_detail"]["p50_ms"] / 1000
        while fast < 10 and time.perf_counter() - opened < 60:
            sent = time.perf_counter()
            await kinds["approval_detail"]()
            fast = fast + 1 if time.perf_counter() - sent < limit else 0
        settled_after_s = time.perf_counter() - opened
        await asyncio.sleep(SETTLE)
        refused = [task.result()[1] for task in waiters.values() if task.done()]
        busy = await probe(kinds, PROBES)
        held = sum(not task.done() for task in waiters.values())
        decided_at = {}
        decided_started = time.perf_counter()
        for request_id in request_ids:
            decided_at[request_id] = time.perf_counter()
            await decide(person, request_id)
        deciding_s = time.perf_counter() - decided_started
        await asyncio.wait(waiters.values(), timeout=30)
        for task in waiters.values():
            task.cancel()
        quiet, busy = pooled(quiet, await probe(kinds, PROBES)), pooled(busy)  # nobody waiting again (see pooled)
    answers = {request_id: task.result() for request_id, task in waiters.items() if task.done() and not task.cancelled()}
    delivered = [at - decided_at[request_id] for request_id, (at, _, got) in answers.items() if got == request_id]
    failed = [status for _, status, _ in answers.values() if status != 200]
    return {
        "waiters": WAITERS,
        "held": held,
        "settled_after_s": settled_after_s,
        "refused_on_opening": tally(refused),
        "quiet": quiet,
        "busy": busy,
        "busy_vs_quiet_p50": busy_vs_quiet(busy, quiet),
        "deciding_s": deciding_s,
        "delivered": len(delivered),
        "failed_in_all": tally(failed),
        "decision_to_agent": percentiles(delivered) if delivered else None,
    }


def run(db: str) -> dict:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # WAITERS sockets here and in the server
    with environment(db) as env:
        env.update(SESSION_COOKIE_SECURE="false", CSRF_COOKIE_SECURE="false")  # plain HTTP on loopback
        agent = agent_headers(SCOPES, ("A",))
        crowd = agent_headers(SCOPES, ("agent-*",))
        source = agent_headers(SCOPES, ("source",))
        result = {"database": db, "raw": asyncio.run(raw_redis(env["REDIS_URL"]))}
        with asgi_server(env, WORKERS) as base:
            reviewer = reviewer_headers(base)
            result["http"] = asyncio.run(http_decisions(base, agent, reviewer))
            result["sdk"] = sdk_decisions(base, agent["Authorization"].split()[1], reviewer)
            result["mcp"] = asyncio.run(mcp_decisions(base, agent, reviewer))
        with asgi_server(env, workers=1) as base:
            result["crowd"] = asyncio.run(many_waiters(base, crowd, source, reviewer))
    return result


def report(result: dict) -> str:
    raw = result["raw"]["blpop"]
    lines = [
        f"approvals on {result['database']} (uvicorn x{WORKERS}, loopback; decision sent -> the waiting agent has it, "
        f"{LATENCY_SAMPLES} sequential requests, each wait held {HOLD * 1000:.0f} ms first)",
        f"  {'raw BLPOP <- LPUSH':26} p50 {raw['p50_ms']:6.2f} ms  p99 {raw['p99_ms']:6.2f} ms",
    ]
    for name, key in [("HTTP wait <- decide", "http"), ("SDK request_approval", "sdk"), ("MCP tool request_approval", "mcp")]:
        figures = result[key]
        lines.append(
            f"  {name:26} p50 {figures['p50_ms']:6.2f} ms  p99 {figures['p99_ms']:6.2f} ms  (target p99 <= 100 ms)  "
            f"= {figures['p50_ms'] / raw['p50_ms']:.1f}x / {figures['p99_ms'] / raw['p99_ms']:.1f}x raw BLPOP"
        )
    crowd = result["crowd"]
    lines.append(
        f"  {crowd['waiters']} agents waiting at once on one web process: {crowd['held']} held while probed "
        f"(settled {crowd['settled_after_s']:.1f} s after opening; refused on opening: {crowd['refused_on_opening'] or 'none'})"
    )
    for name, ratio in crowd["busy_vs_quiet_p50"].items():
        quiet, busy = crowd["quiet"][name], crowd["busy"][name]
        lines.append(
            f"    {name:16} p50 {busy['p50_ms']:6.2f} ms vs {quiet['p50_ms']:6.2f} ms with none waiting, before and after, "
            f"= {ratio:6.1%}   "
            f"p99 {busy['p99_ms']:6.2f} vs {quiet['p99_ms']:6.2f} ms"
        )
    got = crowd["decision_to_agent"] or {"p50_ms": 0, "p99_ms": 0, "max_ms": 0}
    lines.append(
        f"    decided one after another in {crowd['deciding_s']:.1f} s: {crowd['delivered']} of {crowd['waiters']} agents "
        f"got their decision (target: all); decision -> agent p50 {got['p50_ms']:.1f} ms, p99 {got['p99_ms']:.1f} ms, "
        f"last {got['max_ms']:.1f} ms; failed answers: {crowd['failed_in_all'] or 'none'}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    from bench.results import main

    main("approvals", run, report)
