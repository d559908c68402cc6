"""@track_run and @traced on functions, coroutines and generators, and the current run and span
they keep in contextvars: across asyncio tasks, into threads with a copied context (not others),
and across processes through TRACEPARENT. What they record is read back from the live server."""

from __future__ import annotations

import asyncio
import contextvars
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import telemetry_client
from telemetry_client import Tracer, current_run, current_span, log_event, traced, track_run

from runs.models import Run, RunEvent
from traces.models import Span

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def client(live_asgi, agent_key, tmp_path):
    return telemetry_client.init(api_url=live_asgi, api_key=agent_key, spool_dir=tmp_path / "spool")


def events_of(run_id: str) -> list[str]:
    return list(RunEvent.objects.filter(run__run_id=run_id).order_by("id").values_list("event_type", flat=True))


def trace_id_of(run_id: str) -> str:
    (trace_id,) = set(Span.objects.filter(run__run_id=run_id).values_list("trace_id", flat=True))
    return trace_id


def trace(live_asgi: str, agent_key: str, trace_id: str) -> dict[str, dict]:
    found = httpx.get(f"{live_asgi}/api/v1/traces/{trace_id}", headers={"Authorization": f"Api-Key {agent_key}"})
    assert found.status_code == 200, found.text
    return {span["name"]: span for span in found.json()["spans"]}


@track_run("alpha", "plan", items_discovered=2)
def plan(steps: int) -> str:
    log_event("planning", {"steps": steps})
    first_step()
    return current_run().run_id


@traced
def first_step() -> None:
    second_step()


@traced("second", attributes={"tool": "bash"})
def second_step() -> None:
    log_event("stepping")


def test_a_decorated_function_its_events_and_nested_spans(live_asgi, client, agent_key):
    run_id = plan(2)
    assert current_run() is None and current_span() is None
    assert client.flush(timeout=10)
    run = Run.objects.get(run_id=run_id)
    assert (run.status, run.job_type, run.items_discovered) == ("success", "plan", 2)
    assert events_of(run_id) == ["planning", "stepping"]
    spans = trace(live_asgi, agent_key, trace_id_of(run_id))
    assert set(spans) == {"first_step", "second"}
    assert spans["first_step"]["parent_span_id"] == "" and spans["second"]["parent_span_id"] == spans["first_step"]["span_id"]
    assert spans["second"]["attributes"] == {"tool": "bash"}
    assert {span["run_event_id"] for span in spans.values()} == {run.event_id}


def test_two_concurrent_tasks_each_in_its_own_run(live_asgi, client, agent_key):
    @track_run("alpha", "crawl")
    async def crawl(site: str) -> str:
        for page in range(3):
            log_event("page", {"site": site, "page": page})
            await fetch(site)  # the other task runs meanwhile
        return current_run().run_id

    @traced
    async def fetch(site: str) -> None:
        await asyncio.sleep(0.01)
        log_event("fetched", {"site": site})

    async def both() -> list[str]:
        return await asyncio.gather(asyncio.create_task(crawl("a")), asyncio.create_task(crawl("b")))

    run_ids = asyncio.run(both())
    assert client.flush(timeout=10)
    for run_id, site in zip(run_ids, "ab", strict=True):
        events = RunEvent.objects.filter(run__run_id=run_id)
        assert {event.payload["site"] for event in events} == {site} and events.count() == 6
        spans = Span.objects.filter(run__run_id=run_id)
        assert spans.count() == 3 and {span.name for span in spans} == {fetch.__qualname__}
    assert Run.objects.get(run_id=run_ids[0]).status == "success"


def test_a_generator_is_in_its_run_while_its_body_runs_only(live_asgi, client):
    @track_run("alpha", "pages")
    def pages(count: int):
        for page in range(count):
            log_event("page", {"page": page})
            yield current_run().run_id

    consumer = pages(3)
    assert not Run.objects.exists() and current_run() is None  # nothing before the first next()
    run_id = next(consumer)
    assert current_run() is None  # not leaked to the consumer between yields
    log_event("outside")  # no run here: ignored
    assert list(consumer) == [run_id, run_id]
    stopped = pages(5)
    next(stopped)
    stopped.close()  # the consumer stopping early ends the run too
    assert client.flush(timeout=10)
    assert Run.objects.get(run_id=run_id).status == "success" and events_of(run_id) == ["page"] * 3
    assert [run.status for run in Run.objects.exclude(run_id=run_id)] == ["success"]


def test_an_async_generator_is_traced_over_its_iteration(live_asgi, client, agent_key):
    @track_run("alpha", "stream")
    async def stream() -> list[str]:
        return [name async for name in names()]

    @traced("names")
    async def names():
        for _ in range(2):
            await asyncio.sleep(0)
            yield current_span().name

    assert asyncio.run(stream()) == ["names", "names"]
    assert client.flush(timeout=10)
    assert Span.objects.get().name == "names" and Run.objects.get().status == "success"


def test_a_thread_with_a_copied_context_is_in_the_run_and_one_without_is_not(live_asgi, client, sdk_logs):
    @track_run("alpha", "threads")
    def work() -> str:
        found = {}

        def look(name: str) -> None:
            found[name] = current_run()
            log_event(name)

        copied = threading.Thread(target=contextvars.copy_context().run, args=(look, "copied"))
        for thread in (copied, threading.Thread(target=look, args=("plain",))):
            thread.start()
            thread.join()
        assert found["copied"] is current_run() and found["plain"] is None
        return current_run().run_id

    run_id = work()
    assert client.flush(timeout=10)
    assert events_of(run_id) == ["copied"]
    assert "log_event('plain') outside any run ignored" in sdk_logs.text


def test_an_exception_fails_the_run_and_the_span_and_propagates(live_asgi, client, agent_key):
    @track_run("alpha", "fail")
    @traced("risky")
    async def risky() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        asyncio.run(risky())

    @track_run("alpha", "fail-later")
    def failing_pages():
        yield 1
        raise KeyError("page 2")

    with pytest.raises(KeyError):
        list(failing_pages())
    assert client.flush(timeout=10)
    runs = {run.job_type: run for run in Run.objects.all()}
    assert (runs["fail"].status, runs["fail"].error_summary) == ("failed", "ValueError: bad input")
    assert (runs["fail-later"].status, runs["fail-later"].error_summary) == ("failed", "KeyError: 'page 2'")
    span = Span.objects.get()
    assert (span.status, span.status_message, span.run.job_type) == ("error", "bad input", "fail")


def test_the_current_span_crosses_into_a_sub_agent_through_traceparent(live_asgi, client, agent_key):
    @track_run("alpha", "delegate")
    @traced("delegate")
    def delegate() -> str:
        env = {**os.environ, "TRACEPARENT": Tracer("alpha").propagate(), "TELEMETRY_API_URL": live_asgi}
        env |= {"TELEMETRY_API_KEY": agent_key, "TELEMETRY_SPOOL_DIR": str(Path(client.config.spool_dir).parent / "sub")}
        subprocess.run([sys.executable, "-m", "tests.client.traced_agent"], cwd=ROOT, env=env, check=True, timeout=60)
        return current_span().trace_id

    trace_id = delegate()
    assert client.flush(timeout=10)
    spans = trace(live_asgi, agent_key, trace_id)
    assert set(spans) == {"delegate", "work", "write_file"}
    assert spans["work"]["parent_span_id"] == spans["delegate"]["span_id"] and spans["work"]["agent_name"] == "alpha-sub"
    assert spans["write_file"]["parent_span_id"] == spans["work"]["span_id"]


def test_traced_without_an_agent_runs_the_function_without_a_span(client, sdk_logs):
    @traced
    def alone() -> int:
        return 7

    assert alone() == 7 and alone() == 7
    assert sdk_logs.text.count("runs without a span") == 1
