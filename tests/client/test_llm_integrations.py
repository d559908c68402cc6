"""The SDK's LLM integrations: the real `openai` and `anthropic` clients, instrumented, call a fake
upstream (tests/fake_llm.py); each call becomes a span under the current run and span and, unless
it failed, LLM usage priced by the real server. Streams come back as the library's own, recorded
when read to the end or closed early."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from decimal import Decimal

import anthropic
import openai
import pytest
from telemetry_client import TelemetryClient, traced
from telemetry_client.integrations import anthropic as anthropic_integration
from telemetry_client.integrations import openai as openai_integration

from quality.models import LlmUsage, ModelPrice
from runs.models import Run
from tests.conftest import database_url, production_env
from tests.fake_llm import BROKEN, CLAUDE, MISSING, SNAPSHOT, UNCOUNTED, fake_llm
from tests.services import ROOT, asgi_server
from traces.models import Span

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "Say hello."}]
USAGE = {"stream_options": {"include_usage": True}}
# gpt-4o-mini: 176 uncached input tokens x $0.15 + 1024 cached x $0.075 + 80 output x $0.60, per Mtok
OPENAI_COST = Decimal("0.0001512")
# claude-sonnet-4: 200 x $3 + 80 x $15 + 1000 cache reads x $0.30 + 500 cache writes x $3.75, per Mtok
CLAUDE_COST = Decimal("0.003975")


@pytest.fixture(scope="module")
def server(django_db_setup, static_root) -> Iterator[str]:
    """One real server for the module."""
    with asgi_server(production_env(DATABASE_URL=database_url(), TELEMETRY_VAR_DIR=static_root)) as base:
        yield base


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with fake_llm() as base:
        yield base


@pytest.fixture
def telemetry(server, make_client, sonnet_price) -> TelemetryClient:
    price = {"tier": "cheap", "input_per_mtok": "0.15", "output_per_mtok": "0.60", "cache_read_per_mtok": "0.075"}
    ModelPrice.objects.update_or_create(model="gpt-4o-mini", defaults={**price, "cache_write_per_mtok": 0})
    return make_client(server)


def recorded(telemetry: TelemetryClient, run_id: str) -> tuple[Run, list[Span], dict[str, LlmUsage]]:
    """The run, its spans in the order they started, and the usage each span became."""
    assert telemetry.flush(timeout=10)
    run = Run.objects.get(run_id=run_id)
    spans = list(Span.objects.filter(trace_id__in=Span.objects.filter(run=run).values("trace_id")).order_by("start_time"))
    return run, spans, {call.event_id.removeprefix("span-"): call for call in LlmUsage.objects.all()}


def assert_calls(run: Run, parent: Span, calls: list[Span], usage: dict[str, LlmUsage], tokens: list[tuple[int, ...]],
                 model: str, provider: str) -> None:  # fmt: skip
    """Each call a client span under `parent` in `run`, and its usage with `tokens` (input, output,
    cache reads, cache writes; () for no usage)."""
    assert len(calls) == len(tokens)
    for span, expected in zip(calls, tokens, strict=True):
        assert (span.span_kind, span.parent_span_id, span.run, span.agent_name) == ("client", parent.span_id, run, "alpha")
        if not expected:
            assert span.status == "error" and span.event_id not in usage
            continue
        assert span.status == "ok" and span.attributes["gen_ai.response.model"] == model
        call = usage[span.event_id]
        assert (call.model, call.provider, call.task_type, call.run, call.success) == (model, provider, "chat", run, True)
        assert (call.input_tokens, call.output_tokens, call.cache_read_tokens, call.cache_write_tokens) == expected
        assert call.latency_ms >= 0


def test_openai_calls_are_priced_usage_and_spans_of_the_run(telemetry, upstream):
    client = openai_integration.instrument(openai.OpenAI(base_url=f"{upstream}/v1", api_key="x", max_retries=0))
    assert openai_integration.instrument(client) is client  # once

    @traced("plan")
    def plan() -> list[str]:
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True, **USAGE)
        assert type(stream) is openai.Stream
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES, **USAGE) as helped:
            final = helped.get_final_completion()
        response = client.with_options(timeout=30).responses.create(model="gpt-4o-mini", input="Say hello.")
        events = client.responses.create(model="gpt-4o-mini", input="Say hello.", stream=True)
        deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
        return [answer.choices[0].message.content, streamed, final.choices[0].message.content, response.output_text, deltas]

    with telemetry.track_run("alpha", "answer") as run:
        assert plan() == ["Hello."] * 5
    run, (parent, *calls), usage = recorded(telemetry, run.run_id)
    assert parent.name == "plan" and [span.name for span in calls] == ["chat gpt-4o-mini"] * 5
    assert_calls(run, parent, calls, usage, [(176, 80, 1024, 0)] * 5, SNAPSHOT, "openai")
    assert {call.cost for call in usage.values()} == {OPENAI_COST}


def test_openai_async_streams_ended_early_or_without_usage_and_errors(telemetry, upstream):
    client = openai_integration.instrument(openai.AsyncOpenAI(base_url=f"{upstream}/v1", api_key="x", max_retries=0))

    @traced("plan")
    async def plan() -> None:
        answer = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert answer.usage.prompt_tokens == 1200
        bare = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        assert type(bare) is openai.AsyncStream
        assert [chunk async for chunk in bare][-1].usage is None
        early = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True, **USAGE)
        async with early:
            async for _chunk in early:
                break
        events = await client.responses.create(model="gpt-4o-mini", input="Say hello.", stream=True)
        assert [event.type async for event in events][-1] == "response.completed"
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model=MISSING, messages=MESSAGES)
        broken = await client.chat.completions.create(model=BROKEN, messages=MESSAGES, stream=True, **USAGE)
        with pytest.raises(openai.APIError, match="overloaded"):
            async for _chunk in broken:
                pass

    with telemetry.track_run("alpha", "answer") as run:
        asyncio.run(plan())
    run, (parent, *calls), usage = recorded(telemetry, run.run_id)
    tokens = [(176, 80, 1024, 0), (0, 0, 0, 0), (0, 0, 0, 0), (176, 80, 1024, 0), (), ()]
    assert_calls(run, parent, calls, usage, tokens, SNAPSHOT, "openai")
    assert [usage[span.event_id].cost for span in calls[:4]] == [OPENAI_COST, 0, 0, OPENAI_COST]
    missing, broken = calls[-2:]
    assert (missing.name, missing.attributes["error.type"]) == (f"chat {MISSING}", "NotFoundError")
    assert f"The model `{MISSING}` does not exist" in missing.status_message
    assert (broken.name, broken.attributes["error.type"], broken.status_message) == (
        f"chat {BROKEN}",
        "APIError",
        "The server is overloaded",
    )
    assert len(usage) == 4


def test_anthropic_messages_streams_and_errors(telemetry, upstream):
    client = anthropic_integration.instrument(anthropic.Anthropic(base_url=upstream, api_key="x", max_retries=0))
    ask = {"model": "claude-sonnet-4-0", "max_tokens": 100, "messages": MESSAGES}

    @traced("plan")
    def plan() -> None:
        assert client.messages.create(**ask).content[0].text == "Hello."
        stream = client.messages.create(**ask, stream=True)
        assert type(stream) is anthropic.Stream and [event.type for event in stream][-1] == "message_stop"
        with client.messages.stream(**ask) as stream:
            assert stream.get_final_text() == "Hello."
        with client.messages.stream(**ask) as stream:
            assert next(text for text in stream.text_stream) == "Hel"  # then closed early
        with pytest.raises(anthropic.NotFoundError):
            client.messages.create(**{**ask, "model": MISSING})

    with telemetry.track_run("alpha", "answer") as run:
        plan()
    run, (parent, *calls), usage = recorded(telemetry, run.run_id)
    full = (200, 80, 1000, 500)
    assert_calls(run, parent, calls, usage, [full, full, full, (200, 1, 1000, 500), ()], CLAUDE, "anthropic")
    assert [usage[span.event_id].cost for span in calls[:4]] == [CLAUDE_COST] * 3 + [Decimal("0.00279")]
    assert [usage[span.event_id].tier for span in calls[:4]] == ["capable"] * 4  # priced as claude-sonnet-4
    assert calls[-1].attributes["error.type"] == "NotFoundError"


def test_anthropic_async_messages_and_stream(telemetry, upstream):
    client = anthropic_integration.instrument(anthropic.AsyncAnthropic(base_url=upstream, api_key="x", max_retries=0))
    ask = {"model": "claude-sonnet-4-0", "max_tokens": 100, "messages": MESSAGES}

    @traced("plan")
    async def plan() -> None:
        assert (await client.messages.create(**ask)).content[0].text == "Hello."
        stream = await client.messages.create(**ask, stream=True)
        assert type(stream) is anthropic.AsyncStream and [event.type async for event in stream][-1] == "message_stop"
        async with client.messages.stream(**ask) as stream:
            assert await stream.get_final_text() == "Hello."

    with telemetry.track_run("alpha", "answer") as run:
        asyncio.run(plan())
    run, (parent, *calls), usage = recorded(telemetry, run.run_id)
    assert_calls(run, parent, calls, usage, [(200, 80, 1000, 500)] * 3, CLAUDE, "anthropic")


def test_an_agent_name_without_a_run_and_calls_with_no_agent(telemetry, upstream, sdk_logs):
    named = openai_integration.instrument(
        openai.OpenAI(base_url=f"{upstream}/v1", api_key="x"), agent_name="alpha-chat", telemetry=telemetry
    )
    unnamed = anthropic_integration.instrument(anthropic.Anthropic(base_url=upstream, api_key="x"))
    assert named.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices[0].message.content == "Hello."
    for _ in range(2):
        assert unnamed.messages.create(model="claude-sonnet-4-0", max_tokens=10, messages=MESSAGES).content
    assert telemetry.flush(timeout=10)
    span = Span.objects.get()
    assert (span.agent_name, span.parent_span_id, span.run) == ("alpha-chat", "", None)
    call = LlmUsage.objects.get()
    assert (call.agent_name, call.model, call.run, call.cost) == ("alpha-chat", SNAPSHOT, None, OPENAI_COST)
    assert sdk_logs.text.count("anthropic calls not recorded: no agent_name, current span or current run") == 1


def test_instrument_leaves_anything_else_alone(sdk_logs):
    thing = object()
    assert openai_integration.instrument(thing) is thing and anthropic_integration.instrument(thing) is thing
    assert sdk_logs.text.count("cannot instrument a object: not a client of this library") == 2
    # Without the libraries: the SDK imports, and instrument() logs and returns what it was given.
    script = """
import logging, sys
sys.modules["openai"] = sys.modules["anthropic"] = None
import telemetry_client
from telemetry_client.integrations import anthropic, openai
logging.basicConfig()
thing = object()
assert openai.instrument(thing) is thing and anthropic.instrument(thing) is thing
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("cannot instrument a object: import of") == 2, done.stderr


def test_a_call_is_answered_when_its_record_fails(telemetry, make_client, upstream, sdk_logs):
    """Usage that cannot be read (counts missing) is logged and the call recorded without it; a
    closed telemetry client drops what it is given. The agent's calls work on."""
    client = openai_integration.instrument(
        openai.OpenAI(base_url=f"{upstream}/v1", api_key="x"), agent_name="alpha", telemetry=telemetry
    )
    answer = client.chat.completions.create(model=UNCOUNTED, messages=MESSAGES)
    assert answer.choices[0].message.content == "Hello." and answer.usage.prompt_tokens is None
    assert "cannot read a openai answer; its usage is not recorded" in sdk_logs.text
    assert telemetry.flush(timeout=10)
    call = LlmUsage.objects.get()
    assert (call.model, call.input_tokens, call.output_tokens, call.cost) == (SNAPSHOT, 0, 0, 0)
    assert Span.objects.get().status == "ok"

    closed = make_client(None)
    closed.close()
    client = openai_integration.instrument(
        openai.OpenAI(base_url=f"{upstream}/v1", api_key="x"), agent_name="alpha", telemetry=closed
    )
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True, **USAGE)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == "Hello."
    assert closed.get_stats()["dropped"] == 1


def test_the_integrations_and_the_mcp_relay_ship_with_their_extras():
    pyproject = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())
    sdk = ROOT / "client" / "telemetry_client"
    found = {".".join(path.parent.relative_to(sdk.parent).parts) for path in sdk.rglob("__init__.py")}
    assert set(pyproject["tool"]["setuptools"]["packages"]) == found
    assert set(pyproject["project"]["optional-dependencies"]) == {"openai", "anthropic", "mcp"}
    assert not [name for name in pyproject["project"]["dependencies"] if name.startswith(("openai", "anthropic", "mcp"))]
