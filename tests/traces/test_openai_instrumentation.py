"""OpenTelemetry users get cost with no code: the official OpenAI instrumentation
(opentelemetry-instrumentation-openai-v2), calling a fake OpenAI upstream through the real `openai`
client, exports its spans to the real server's /v1/traces; they become LLM usage priced from the
price table, and the trace page shows them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from quality.models import LlmUsage, ModelPrice
from tests.conftest import make_key, make_operator
from tests.fake_llm import SNAPSHOT, fake_llm
from traces.models import Span


@pytest.fixture
def fake_openai() -> Iterator[str]:
    with fake_llm() as base:
        yield f"{base}/v1"


@pytest.fixture
def instrumented(live_asgi) -> Iterator[TracerProvider]:
    """The OpenAI instrumentation exporting to the live server as agent 'alpha' (its service.name)."""
    raw_key = make_key("alpha")[1]
    exporter = OTLPSpanExporter(endpoint=f"{live_asgi}/v1/traces", headers={"Authorization": f"Api-Key {raw_key}"})
    provider = TracerProvider(resource=Resource.create({"service.name": "alpha"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    yield provider
    instrumentor.uninstrument()
    provider.shutdown()


def test_openai_calls_become_priced_llm_usage_and_a_trace(instrumented, fake_openai, live_asgi, django_user_model):
    price = {"tier": "cheap", "input_per_mtok": "0.15", "output_per_mtok": "0.60", "cache_read_per_mtok": "0.075"}
    ModelPrice.objects.update_or_create(model="gpt-4o-mini", defaults={**price, "cache_write_per_mtok": 0})
    client = openai.OpenAI(base_url=fake_openai, api_key="x")
    messages = [{"role": "user", "content": "Say hello."}]
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert answer.choices[0].message.content == streamed == "Hello."
    assert instrumented.force_flush(timeout_millis=10_000)

    spans = list(Span.objects.filter(agent_name="alpha"))
    assert [span.name for span in spans] == ["chat gpt-4o-mini"] * 2
    assert {span.span_kind for span in spans} == {"client"} and {span.status for span in spans} != {"error"}
    calls = LlmUsage.objects.filter(agent_name="alpha")
    assert calls.count() == 2
    for call in calls:
        assert (call.model, call.provider, call.task_type, call.tier) == (SNAPSHOT, "openai", "chat", "cheap")
        assert (call.input_tokens, call.output_tokens) == (1200, 80)
        # 2.4b0 sends no cached tokens for chat completions (its 1024 are inside the 1200 input tokens
        # at OpenAI): should a later version send them, their price must not double-count them.
        assert call.cache_read_tokens == 0
        assert call.cost == Decimal("0.000228")  # 1200 x $0.15 + 80 x $0.60 per Mtok

    make_operator(django_user_model, "analyst")
    with signed_in(live_asgi, "analyst") as staff:
        for span in spans:
            page = staff.get(f"/traces/{span.trace_id}/")
            assert page.status_code == 200 and "chat gpt-4o-mini" in page.text


AGENT = """
import openai
answer = openai.OpenAI().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello."}])
print(answer.choices[0].message.content)
"""


def test_the_quickstart_as_docs_sdk_md_writes_it(fake_openai, live_asgi, tmp_path):
    """docs/sdk.md's five lines: an agent's code unchanged, run by `opentelemetry-instrument` with
    the environment the quickstart exports."""
    raw_key = make_key("my-agent")[1]
    ModelPrice.objects.update_or_create(
        model="gpt-4o-mini", defaults={"tier": "cheap", "input_per_mtok": 1, "output_per_mtok": 1}
    )
    (tmp_path / "agent.py").write_text(AGENT)
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env |= {"OPENAI_BASE_URL": fake_openai, "OPENAI_API_KEY": "x"}
    env |= {  # the quickstart's exports
        "OTEL_TRACES_EXPORTER": "otlp_proto_http",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{live_asgi}/v1/traces",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": f"Authorization=Api-Key%20{raw_key}",
        "OTEL_SERVICE_NAME": "my-agent",
    }
    instrument = Path(sys.executable).with_name("opentelemetry-instrument")
    done = subprocess.run(
        [str(instrument), sys.executable, "agent.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == "Hello.", done.stderr
    call = LlmUsage.objects.get(agent_name="my-agent")
    assert (call.model, call.provider, call.input_tokens, call.output_tokens) == (SNAPSHOT, "openai", 1200, 80)
    assert call.cost == Decimal("0.00128")  # (1200 + 80) x $1 / Mtok
    assert Span.objects.get(agent_name="my-agent").name == "chat gpt-4o-mini"


def signed_in(live_asgi: str, username: str) -> httpx.Client:
    """An HTTP client signed in on the live server's admin login form (its cookies are Secure:
    sent by hand over the loopback's plain HTTP)."""
    form = httpx.get(f"{live_asgi}/admin/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    headers = {"Origin": live_asgi, "Referer": f"{live_asgi}/admin/login/", "Cookie": f"csrftoken={form.cookies['csrftoken']}"}
    data = {"username": username, "password": "pw", "csrfmiddlewaretoken": token}
    done = httpx.post(f"{live_asgi}/admin/login/", data=data, headers=headers)
    assert done.status_code == 302, done.text
    return httpx.Client(base_url=live_asgi, headers={"Cookie": f"sessionid={done.cookies['sessionid']}"})
