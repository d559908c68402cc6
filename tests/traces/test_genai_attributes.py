"""Each GenAI attribute name the receiver reads, alone on a span, lands in its LLM usage field:
OpenTelemetry's current semantic conventions and the older names instrumentations still send."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from quality.models import LlmUsage
from traces import services

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sonnet_price")]

FIELDS = {
    "input_tokens": services.INPUT_TOKENS,
    "output_tokens": services.OUTPUT_TOKENS,
    "cache_read_tokens": services.CACHE_READ_TOKENS,
    "cache_write_tokens": services.CACHE_WRITE_TOKENS,
    "provider": services.PROVIDER,
}
NAMES = [(field, name) for field, names in FIELDS.items() for name in names]


def span(attributes: dict) -> dict:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    return {"kind": "span", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7", "name": "chat",
            "agent_name": "alpha", "start_time": start.isoformat(), "end_time": (start + timedelta(milliseconds=5)).isoformat(),
            "attributes": attributes}  # fmt: skip


def recorded(agent, attributes: dict) -> LlmUsage:
    assert agent.post("/api/v1/ingest", [span(attributes)], format="json").json()["inserted"] == 1
    return LlmUsage.objects.get(agent_name="alpha")


def test_the_names_include_the_current_and_the_older_conventions():
    assert set(services.INPUT_TOKENS) >= {"gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"}
    assert set(services.OUTPUT_TOKENS) >= {"gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"}
    assert set(services.PROVIDER) >= {"gen_ai.provider.name", "gen_ai.system"}


@pytest.mark.parametrize(("field", "name"), NAMES, ids=[name for _, name in NAMES])
def test_each_name_fills_its_field(agent, field, name):
    value = "anthropic" if field == "provider" else 1234
    call = recorded(agent, {"gen_ai.request.model": "claude-sonnet-4", name: value})
    assert getattr(call, field) == value
    assert call.cost > 0 or field == "provider"


@pytest.mark.parametrize("name", services.MODEL)
def test_each_model_name_makes_a_span_a_priced_call(agent, name):
    call = recorded(agent, {name: "claude-sonnet-4", "gen_ai.usage.input_tokens": 1_000_000, "gen_ai.operation.name": "chat"})
    assert (call.model, call.task_type, call.tier, float(call.cost)) == ("claude-sonnet-4", "chat", "capable", 3.0)


def test_the_response_model_wins_over_the_requested_one(agent):
    call = recorded(agent, {"gen_ai.request.model": "claude-sonnet-4", "gen_ai.response.model": "claude-sonnet-4-20250514"})
    assert call.model == "claude-sonnet-4-20250514" and call.tier == "capable"  # priced as its alias
