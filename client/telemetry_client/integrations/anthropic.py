"""Anthropic's client (`anthropic.Anthropic`, `anthropic.AsyncAnthropic`): each `messages` call
(`create`, streamed or not, and the `stream(...)` block) a span of the current run or span,
recorded with its model and tokens (cache reads and writes apart) when it answers or when its
stream ends or is closed.

    from anthropic import Anthropic
    from telemetry_client.integrations.anthropic import instrument

    client = instrument(Anthropic())
"""

from __future__ import annotations

from typing import Any, TypeVar

from telemetry_client.client import TelemetryClient
from telemetry_client.integrations import calls

T = TypeVar("T")
PATHS = frozenset({"/v1/messages"})


def instrument(client: T, *, agent_name: str | None = None, telemetry: TelemetryClient | None = None) -> T:
    """`client` itself, its model calls recorded as spans of `agent_name` (on `telemetry`, default
    the process's client), else of the current span's or the current run's agent. Never raises:
    anything but an Anthropic client is logged and returned unchanged; instrumenting twice records
    once."""
    return calls.instrument(client, _provider, _kinds, _resources, agent_name, telemetry)


def _kinds() -> tuple[type, ...]:
    import anthropic

    return (anthropic.Anthropic, anthropic.AsyncAnthropic)


def _resources(client: Any) -> list[Any]:
    return [client.messages]


def _provider() -> calls.Provider:
    import anthropic

    return calls.Provider("anthropic", PATHS, anthropic.Stream, anthropic.AsyncStream, _seen)


def usage_of(answer: Any) -> calls.Usage | None:
    usage = getattr(answer, "usage", None)
    if usage is None:
        return None
    return calls.Usage(
        usage.input_tokens or 0,
        usage.output_tokens or 0,
        usage.cache_read_input_tokens or 0,
        usage.cache_creation_input_tokens or 0,
    )


def _seen(item: Any, call: calls.LlmCall) -> None:
    # A message has it all. A stream starts with the message (its model, its input tokens), and
    # its message_delta events count the tokens so far (some of them only).
    kind = getattr(item, "type", None)
    if kind in ("message", "message_start"):
        message = item if kind == "message" else item.message
        call.update(message.model)
        call.update(usage=usage_of(message))
    elif kind == "message_delta":
        usage = item.usage
        call.update(
            input_tokens=getattr(usage, "input_tokens", None),
            output_tokens=usage.output_tokens,
            cache_read_tokens=getattr(usage, "cache_read_input_tokens", None),
            cache_write_tokens=getattr(usage, "cache_creation_input_tokens", None),
        )
