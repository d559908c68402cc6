"""The SDK's awaitable forms (`a` + the blocking call's name) against the real server: the same
answers, an httpx.AsyncClient per event loop closed with its loop, cancellation that ends the
server's wait and takes nothing, and no exception into the agent."""

from __future__ import annotations

import asyncio
import gc
import inspect
import threading
import warnings

import httpx
import pytest
from telemetry_client import (
    ApprovalGate,
    CoordinationSignals,
    EventStreamer,
    FeedbackLoop,
    HeartbeatCoordinator,
    RunContext,
    TelemetryClient,
    TelemetryFeatures,
)

from approvals import services
from approvals.models import ApprovalRequest as StoredRequest
from tests.conftest import make_reviewer
from tests.services import asgi_server, wait_until_held

BLOCKING = {
    ApprovalGate: ["request_approval", "respond_to_approval", "get_pending_approvals", "clear_expired_requests"],
    HeartbeatCoordinator: [
        "start_heartbeat", "beat", "stop_heartbeat", "get_active_agents", "is_agent_alive", "get_agent_status",
        "get_stale_agents",
    ],
    CoordinationSignals: [
        "signal", "broadcast", "wait_for_signal", "check_signal", "get_pending_signals", "clear_signals",
    ],
    EventStreamer: [
        "publish_event", "consume_events", "get_recent_events", "get_stream_info", "delete_stream", "trim_stream",
    ],
    FeedbackLoop: ["get_quality_stats", "recommend_tier", "get_template_confidence"],
    TelemetryFeatures: ["check_all", "get_status", "is_available"],
    TelemetryClient: ["associate_commit", "flush", "close"],
    RunContext: ["associate_commit"],
}  # fmt: skip


def test_every_blocking_call_has_an_awaitable_form_with_its_parameters():
    for cls, names in BLOCKING.items():
        for name in names:
            blocking, awaited = getattr(cls, name), getattr(cls, f"a{name}")
            assert inspect.iscoroutinefunction(awaited) or inspect.isasyncgenfunction(awaited), f"{cls.__name__}.a{name}"
            assert inspect.signature(awaited).parameters.keys() == inspect.signature(blocking).parameters.keys()


@pytest.fixture
def no_warnings():
    """Fails the test on any warning (an unclosed client or socket is a ResourceWarning). What
    earlier tests left is collected first: only this test's own garbage counts."""
    gc.collect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
        gc.collect()
    assert [str(warning.message) for warning in caught] == []


def test_the_awaitable_forms_answer_as_the_blocking_ones(live_asgi, make_client, sdk_logs, no_warnings):
    client = make_client(live_asgi)
    heartbeat, signals, streams = HeartbeatCoordinator(client), CoordinationSignals(client, "alpha"), EventStreamer(client)

    async def agent():
        await heartbeat.astart_heartbeat("alpha", display_name="Alpha")
        await heartbeat.abeat(status="building", progress=0.5)
        status = await heartbeat.aget_agent_status("alpha")
        assert status is not None and (status.status, status.display_name) == ("building", "Alpha")
        assert await heartbeat.ais_agent_alive("alpha") is True
        assert [beat.agent_id for beat in await heartbeat.aget_active_agents()] == ["alpha"]
        assert await heartbeat.aget_stale_agents(threshold_seconds=3600) == []
        await heartbeat.astop_heartbeat()
        assert await heartbeat.ais_agent_alive("alpha") is False

        sent = await signals.asignal("go", target_agent="alpha", payload={"n": 1})
        assert [found.signal_id for found in await signals.aget_pending_signals()] == [sent]
        assert (await signals.acheck_signal("go", consume=False)).signal_id == sent
        taken = await signals.await_for_signal("go", timeout=5)
        assert taken is not None and (taken.signal_id, taken.payload) == (sent, {"n": 1})
        await signals.asignal("stop", target_agent="alpha")
        assert await signals.aclear_signals() == 1
        assert await signals.abroadcast("all") != ""  # a broadcast does not reach its sender
        assert await signals.await_for_signal("all", timeout=0.2) is None

        first = await streams.apublish_event("build.done", {"n": 1})
        assert [event.event_id for event in await streams.aget_recent_events("build.done")] == [first]
        assert [event.data async for event in streams.aconsume_events(["build.done"], start_id="0-0")] == [{"n": 1}]
        assert (await streams.aget_stream_info("build.done"))["length"] == 1

        feedback = FeedbackLoop(client)
        feedback.record_feedback("wf", "stage", "cheap", 0.9)  # a recording call, from a coroutine
        stats = await feedback.aget_quality_stats("wf", "stage")  # delivered first: the read sees it
        assert stats is not None and stats.sample_count == 1
        assert (await feedback.arecommend_tier("wf", "stage", "cheap")).current_tier == "cheap"
        assert await feedback.aget_template_confidence("t") == 0.5
        assert await TelemetryFeatures(client).ais_available("redis") is True

        run_id = client.start_run("alpha", "job")
        assert (await RunContext(run_id, client).aassociate_commit("abcdef1", "ci"))[0] is True
        assert await client.aflush(10) is True

    asyncio.run(agent())
    assert client._connections._loops == {}  # closed as asyncio.run shut the loop down
    assert "failed" not in sdk_logs.text


def test_each_event_loop_asks_on_a_client_of_its_own(live_asgi, make_client, sdk_logs, no_warnings):
    client = make_client(live_asgi)
    signals = CoordinationSignals(client, agent_id="alpha")
    clients = []

    async def agent(signal_type: str):
        await signals.asignal(signal_type, target_agent="alpha")
        clients.append(client._connections._loops[asyncio.get_running_loop()][0])
        return (await signals.await_for_signal(signal_type, timeout=5)).signal_type

    threads = [threading.Thread(target=lambda n=n: asyncio.run(agent(f"go-{n}"))) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert asyncio.run(agent("go-3")) == "go-3"
    assert len(clients) == 3 and all(loop_client.is_closed for loop_client in clients)
    assert len({id(loop_client) for loop_client in clients}) == 3
    assert "failed" not in sdk_logs.text


def test_a_cancelled_wait_ends_on_the_server_and_leaves_its_signal_and_request_to_the_next(
    server_env, make_client, agent_key, django_user_model, tmp_path, sdk_logs, no_warnings
):
    log = tmp_path / "web.log"
    with asgi_server({**server_env, "LOG_LEVEL": "DEBUG"}, log=log) as base:
        client = make_client(base)
        signals, gate = CoordinationSignals(client, agent_id="alpha"), ApprovalGate(client, agent_id="alpha")

        async def cancelled_once_held(task: asyncio.Task, channel: str) -> None:
            await asyncio.to_thread(wait_until_held, log, channel)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        async def agent():
            await cancelled_once_held(asyncio.create_task(signals.await_for_signal("go", timeout=30)), "signals:alpha")
            sent = await signals.asignal("go", target_agent="alpha")
            taken = await signals.await_for_signal("go", timeout=5)
            assert taken is not None and taken.signal_id == sent

            asking = asyncio.create_task(gate.arequest_approval("deploy", timeout=60))
            request_id = await asyncio.to_thread(_pending_request_id)
            await cancelled_once_held(asking, f"approvals:{request_id}")
            return request_id

        request_id = asyncio.run(agent())
        stored = StoredRequest.objects.get(request_id=request_id)
        assert stored.status == "pending"
        services.decide(stored, True, make_reviewer("ada"), "go ahead")
        answer = httpx.post(
            f"{base}/api/v1/approvals/{request_id}/wait", json={"timeout": 5}, headers={"Authorization": f"Api-Key {agent_key}"}
        )
        assert answer.json()["decision"]["approved"] is True
        client.close()
    assert "failed" not in sdk_logs.text


def _pending_request_id() -> str:
    """The one pending request's id, once there is one."""
    for _ in range(600):
        found = list(StoredRequest.objects.filter(status="pending").values_list("request_id", flat=True))
        if found:
            return found[0]
        threading.Event().wait(0.05)
    raise AssertionError("no request was made")


def test_the_awaitable_forms_never_raise_into_the_agent(make_client, sdk_logs, no_warnings):
    unreachable = make_client("http://127.0.0.1:9")
    disabled = make_client("http://127.0.0.1:9", enabled=False)

    async def agent():
        refused = await ApprovalGate(unreachable).arequest_approval("deploy", timeout=1)
        assert refused.approved is False and "could not be asked" in refused.reason
        assert "disabled" in (await ApprovalGate(disabled).arequest_approval("deploy")).reason
        assert await CoordinationSignals(unreachable, "alpha").await_for_signal("go", timeout=0.3) is None
        assert await CoordinationSignals(disabled, "alpha").await_for_signal("go", timeout=30) is None
        assert await CoordinationSignals(unreachable, "alpha").aget_pending_signals() == []
        assert [event async for event in EventStreamer(unreachable).aconsume_events()] == []
        assert await FeedbackLoop(unreachable).aget_quality_stats("wf", "stage") is None
        assert await HeartbeatCoordinator(unreachable).aget_agent_status("alpha") is None
        assert (await unreachable.aassociate_commit("no-such-run", "abcdef1", "ci"))[0] is False

    asyncio.run(agent())
    assert "GET /api/v1/signals?agent_id=alpha failed" in sdk_logs.text
