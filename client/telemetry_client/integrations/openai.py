"""OpenAI's client (`openai.OpenAI`, `openai.AsyncOpenAI`): each `chat.completions` and `responses`
call (create, stream, parse; streamed or not) a span of the current run or span, recorded with its
model and tokens when it answers or when its stream ends or is closed.

    from openai import OpenAI
    from telemetry_client.integrations.openai import instrument

    client = instrument(OpenAI())

A chat completion streams its tokens only when asked (`stream_options={"include_usage": True}`);
without them the call is recorded with its model and time only."""

from __future__ import annotations

from typing import Any, TypeVar

from telemetry_client.client import TelemetryClient
from telemetry_client.integrations import calls

T = TypeVar("T")
PATHS = frozenset({"/chat/completions", "/responses"})


def instrument(client: T, *, agent_name: str | None = None, telemetry: TelemetryClient | None = None) -> T:
    """`client` itself, its model calls recorded as spans of `agent_name` (on `telemetry`, default
    the process's client), else of the current span's or the current run's agent. Never raises:
    anything but an OpenAI client is logged and returned unchanged; instrumenting twice records
    once."""
    return calls.instrument(client, _provider, _kinds, _resources, agent_name, telemetry)


def _kinds() -> tuple[type, ...]:
    import openai

    return (openai.OpenAI, openai.AsyncOpenAI)


def _resources(client: Any) -> list[Any]:
    return [client.chat.completions, client.responses]


def _provider() -> calls.Provider:
    import openai

    return calls.Provider("openai", PATHS, openai.Stream, openai.AsyncStream, _seen)


def usage_of(answer: Any) -> calls.Usage | None:
    """The usage of a chat completion (or its last chunk) or of a response. OpenAI counts the cached
    input tokens among the input tokens: they are taken out, as they have a price of their own."""
    usage = getattr(answer, "usage", None)
    if usage is None:
        return None
    if hasattr(usage, "prompt_tokens"):
        cached = getattr(usage.prompt_tokens_details, "cached_tokens", None) or 0
        return calls.Usage(usage.prompt_tokens - cached, usage.completion_tokens, cached)
    cached = getattr(usage.input_tokens_details, "cached_tokens", None) or 0
    return calls.Usage(usage.input_tokens - cached, usage.output_tokens, cached)


def _seen(item: Any, call: calls.LlmCall) -> None:
    # A chat completion or one of its chunks has the model and, last, the usage; a response's
    # stream events have them in the response they carry (response.created ... response.completed).
    answer = getattr(item, "response", item)
    call.update(getattr(answer, "model", None))
    call.update(usage=usage_of(answer))
