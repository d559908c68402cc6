"""Traces: the SDK's spans and W3C trace context across two processes, the OTLP/HTTP receiver fed
by the real OpenTelemetry exporter (protobuf) and by OTLP's JSON, GenAI attributes becoming LLM
usage, and the waterfall in Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace as otel
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from telemetry_client import SpanContext, SpanKind, Tracer

from quality.models import LlmUsage
from runs.models import Run
from tests.conftest import logged_in_page, make_key, make_operator
from tests.runs.factories import otlp_json
from traces.models import Span

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def client(live_asgi, make_client):
    return make_client(live_asgi)


def test_a_trace_crosses_into_a_sub_agent_process(live_asgi, client, agent_key):
    tracer = Tracer("alpha", client)
    run_id = client.start_run("alpha", "orchestrate")
    root = tracer.start_trace("orchestration-session", SpanKind.SERVER, {"coordinator": "hierarchical"}, run_id=run_id)
    child = tracer.start_span(root, "coder-execution")
    tracer.add_event(child, "code_generation_started", {"files": 3})
    env = {**os.environ, "TRACEPARENT": tracer.propagate(child), "TELEMETRY_API_URL": live_asgi, "TELEMETRY_API_KEY": agent_key}
    env["TELEMETRY_SPOOL_DIR"] = str(Path(client.config.spool_dir).parent / "sub-spool")
    subprocess.run([sys.executable, "-m", "tests.client.sub_agent"], cwd=ROOT, env=env, check=True, timeout=60)
    tracer.record_error(child, ValueError("bad plan"))
    assert tracer.end_span(child) and tracer.end_span(root)
    assert not tracer.end_span(root)  # once
    client.end_run(run_id)
    assert client.flush(timeout=10)
    spans = {span.name: span for span in Span.objects.filter(trace_id=root.trace_id)}
    assert set(spans) == {"orchestration-session", "coder-execution", "sub-agent-work", "write-file"}
    assert spans["sub-agent-work"].parent_span_id == child.span_id and spans["sub-agent-work"].agent_name == "alpha-sub"
    assert spans["write-file"].parent_span_id == spans["sub-agent-work"].span_id
    assert (spans["coder-execution"].status, spans["coder-execution"].status_message) == ("error", "bad plan")
    assert [event["name"] for event in spans["coder-execution"].events] == ["code_generation_started", "exception"]
    assert spans["orchestration-session"].run == Run.objects.get(run_id=run_id)
    assert spans["orchestration-session"].span_kind == "server" and spans["orchestration-session"].status == "ok"


def test_traceparent_parsing():
    context = SpanContext.from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    assert context == SpanContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", True)
    assert context.traceparent() == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    for bad in ("", "garbage", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"):
        assert SpanContext.from_traceparent(bad) is None
    assert Tracer("alpha", memory=None).continue_trace("garbage", "fresh").parent_span_id == ""


def otel_tracer(live_asgi: str, raw_key: str, service: str):
    exporter = OTLPSpanExporter(endpoint=f"{live_asgi}/v1/traces", headers={"Authorization": f"Api-Key {raw_key}"})
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, provider.get_tracer("tests")


@pytest.mark.usefixtures("sonnet_price")
def test_the_opentelemetry_exporter_sends_spans_and_genai_usage(live_asgi):
    raw_key = make_key("alpha")[1]
    provider, tracer = otel_tracer(live_asgi, raw_key, "alpha")
    with tracer.start_as_current_span("plan") as plan:
        with tracer.start_as_current_span("chat claude-sonnet-4", kind=otel.SpanKind.CLIENT) as call:
            call.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "anthropic",
                    "gen_ai.request.model": "claude-sonnet-4",
                    "gen_ai.usage.input_tokens": 1000,
                    "gen_ai.usage.output_tokens": 200,
                    "gen_ai.usage.cache_read.input_tokens": 4000,
                    "telemetry.stage": "draft",
                }
            )
        plan.add_event("decided", {"option": 2})
        trace_id = format(plan.get_span_context().trace_id, "032x")
    provider.shutdown()
    spans = {span.name: span for span in Span.objects.filter(trace_id=trace_id)}
    assert set(spans) == {"plan", "chat claude-sonnet-4"}
    assert spans["chat claude-sonnet-4"].parent_span_id == spans["plan"].span_id
    assert spans["chat claude-sonnet-4"].span_kind == "client" and spans["plan"].events[0]["attributes"] == {"option": 2}
    call = LlmUsage.objects.get(agent_name="alpha")
    assert (call.model, call.provider, call.task_type, call.stage) == ("claude-sonnet-4", "anthropic", "chat", "draft")
    assert (call.input_tokens, call.output_tokens, call.cache_read_tokens, call.tier) == (1000, 200, 4000, "capable")
    assert float(call.cost) == pytest.approx((1000 * 3 + 200 * 15 + 4000 * 0.3) / 1e6)


def test_spans_of_agents_the_key_may_not_act_as_are_refused(live_asgi):
    raw_key = make_key("alpha")[1]
    provider, tracer = otel_tracer(live_asgi, raw_key, "beta")
    with tracer.start_as_current_span("not mine"):
        pass
    provider.shutdown()
    assert not Span.objects.exists()


def test_otlp_json_and_its_errors(live_asgi):
    raw_key = make_key("alpha")[1]
    headers = {"Authorization": f"Api-Key {raw_key}"}
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    sent = httpx.post(f"{live_asgi}/v1/traces", json=otlp_json(trace_id, "alpha"), headers=headers)
    assert sent.status_code == 200 and sent.json()["partialSuccess"]["rejectedSpans"] == "1"
    span = Span.objects.get(trace_id=trace_id)
    assert (span.span_kind, span.status, span.status_message, span.service_name) == ("client", "error", "timeout", "svc")
    assert span.attributes == {"http.status": 200, "tags": ["a"]} and 4 < span.duration_ms < 6
    again = httpx.post(f"{live_asgi}/v1/traces", json=otlp_json(trace_id, "alpha"), headers=headers)
    assert again.status_code == 200 and Span.objects.count() == 1  # idempotent
    assert httpx.post(f"{live_asgi}/v1/traces", json={}, headers={}).status_code == 401
    assert (
        httpx.post(f"{live_asgi}/v1/traces", content=b"{", headers={**headers, "Content-Type": "application/json"}).status_code
        == 400
    )
    wrong = httpx.post(f"{live_asgi}/v1/traces", content=b"x", headers={**headers, "Content-Type": "text/plain"})
    assert wrong.status_code == 415 and wrong.json()["error"]["code"] == "unsupported_media_type"
    junk = httpx.post(
        f"{live_asgi}/v1/traces", content=b"\xff\x00junk", headers={**headers, "Content-Type": "application/x-protobuf"}
    )
    assert junk.status_code == 400


@pytest.fixture
def recorded_trace(live_asgi, client, django_user_model) -> str:
    """A staff user and a trace of three steps, made before the browser starts (its event loop
    keeps the ORM out of this thread)."""
    make_operator(django_user_model, "analyst")
    tracer = Tracer("alpha", client)
    root = tracer.start_trace("session")
    for step in ("plan", "code", "test"):
        with tracer.span(step, parent=root):
            time.sleep(0.02)
    tracer.end_span(root)
    assert client.flush(timeout=10)
    return live_asgi


def test_the_waterfall_in_chromium(recorded_trace, browser, tmp_path):
    live_asgi = recorded_trace
    page = logged_in_page(browser, f"{live_asgi}/traces/", "analyst", viewport={"width": 1400, "height": 900})
    page.click("text=session")
    page.wait_for_selector("#waterfall")
    bars = page.eval_on_selector_all(
        ".span-bar", "bars => bars.map(b => [b.getBoundingClientRect().left, b.getBoundingClientRect().width])"
    )
    assert len(bars) == 4
    lefts = [left for left, _ in bars]
    assert lefts[1] < lefts[2] < lefts[3] and all(width >= 2 for _, width in bars)  # the steps, one after another
    page.screenshot(path=str(tmp_path / "trace.png"), full_page=True)
