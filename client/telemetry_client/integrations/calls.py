"""What the LLM integrations share: a model call's span, from its request to its answer or to the
end of its stream, and the patch that puts it around a client resource's requests.

The span carries OpenTelemetry's GenAI attributes (the model, the tokens); the server stores it
and records from those an LLM usage record, priced from its price table (traces.services): one
record sent, so nothing is counted twice. A call that fails (an HTTP error, a broken stream) has a
span with error status and no model attribute, so no usage.

The patch replaces the `_post` of a resource (`client.chat.completions`, `client.messages`...): the
one method that all of its calls go through (create, stream, parse, with_raw_response), in the
OpenAI and Anthropic SDKs alike. A stream is returned as it came, its `_iterator` and `close`
watched."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from telemetry_client.client import TelemetryClient
from telemetry_client.context import current_span
from telemetry_client.decorators import _current_tracer
from telemetry_client.tracing import SpanKind, Tracer

logger = logging.getLogger("telemetry_client")

T = TypeVar("T")
OPERATION = "chat"  # gen_ai.operation.name: the server's task_type
PATCHED = "_telemetry_llm_calls"  # marks what is patched: instrumenting twice patches once


@dataclass(frozen=True)
class Usage:
    """A call's tokens as the price table prices them: the input tokens neither read from nor
    written to the cache, and the ones that were, each at its own price."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def attributes(self) -> dict[str, int]:
        return {
            "gen_ai.usage.input_tokens": self.input_tokens,
            "gen_ai.usage.output_tokens": self.output_tokens,
            "gen_ai.usage.cache_read.input_tokens": self.cache_read_tokens,
            "gen_ai.usage.cache_creation.input_tokens": self.cache_write_tokens,
        }


@dataclass(frozen=True)
class Provider:
    """How to read one library's calls: which request paths are model calls, its stream classes,
    and what an answer or a stream item tells of the call."""

    name: str  # gen_ai.provider.name
    paths: frozenset[str]
    stream: type
    async_stream: type
    seen: Callable[[Any, LlmCall], None]


class LlmCall:
    """One model call's span: started at the request, ended once, at the answer, the error, or the
    end of its stream (read to the end or closed early)."""

    __slots__ = ("done", "model", "provider", "requested", "span", "tracer", "unreadable", "usage")

    def __init__(self, tracer: Tracer, provider: Provider, model: str):
        self.tracer, self.provider = tracer, provider
        self.requested = self.model = model  # the model asked for; the one that answered (a dated snapshot)
        self.usage: Usage | None = None
        self.done = self.unreadable = False
        attributes = {"gen_ai.provider.name": provider.name, "gen_ai.operation.name": OPERATION}
        parent = current_span() or tracer.extract()
        self.span = tracer.start_span(parent, f"{OPERATION} {model}".strip(), SpanKind.CLIENT, attributes)

    def answered(self, answer: T) -> T:
        """The answer, unchanged: a stream watched until it ends, else recorded now."""
        try:
            if isinstance(answer, self.provider.stream):
                self._watch(answer)
            elif isinstance(answer, self.provider.async_stream):
                self._watch_async(answer)
            else:
                self.seen(answer)
                self.finish()
        except Exception:  # a stream that cannot be watched: the call is recorded as it is now
            logger.exception("telemetry: cannot watch a %s stream (the agent continues)", self.provider.name)
            self.finish()
        return answer

    def seen(self, item: Any) -> None:
        """What an answer or a stream item tells: the model, the usage so far."""
        if self.unreadable:
            return
        try:
            self.provider.seen(item, self)
        except Exception:  # a library version that answers otherwise: the call is recorded without usage
            self.unreadable = True
            logger.exception("telemetry: cannot read a %s answer; its usage is not recorded", self.provider.name)

    def update(self, model: str | None = None, usage: Usage | None = None, **tokens: int | None) -> None:
        """Take the answer's model, its usage, or some of its token counts (the others kept)."""
        self.model = model or self.model
        self.usage = usage or self.usage
        known = {name: value for name, value in tokens.items() if value is not None}
        if known:
            self.usage = dataclasses.replace(self.usage or Usage(), **known)

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            attributes: dict[str, Any] = {"gen_ai.request.model": self.requested, "gen_ai.response.model": self.model}
            if self.usage is not None:
                attributes.update(self.usage.attributes())
            self.tracer.set_attributes(self.span, attributes)
            self.tracer.end_span(self.span)
        except Exception:
            logger.exception("telemetry: cannot record a %s call (the agent continues)", self.provider.name)

    def fail(self, error: BaseException) -> None:
        if self.done:
            return
        self.done = True
        try:
            self.tracer.set_attributes(self.span, {"error.type": type(error).__name__})
            self.tracer.record_error(self.span, error)
            self.tracer.end_span(self.span)
        except Exception:
            logger.exception("telemetry: cannot record a failed %s call (the agent continues)", self.provider.name)

    # A stream's items come from its `_iterator`, which is replaced by one that watches them. The
    # watchers refer to the stream weakly: a stream referring to itself would wait for the garbage
    # collector to be closed when dropped.

    def _watch(self, stream: Any) -> None:
        inner: Iterator[Any] = stream._iterator

        def watched() -> Iterator[Any]:
            try:
                for item in inner:
                    self.seen(item)
                    yield item
            except GeneratorExit:  # dropped unfinished
                self.finish()
                raise
            except BaseException as error:
                self.fail(error)
                raise
            self.finish()

        close, target = type(stream).close, weakref.ref(stream)

        def closed() -> None:
            try:
                if (found := target()) is not None:
                    close(found)
            finally:
                self.finish()

        stream._iterator, stream.close = watched(), closed

    def _watch_async(self, stream: Any) -> None:
        inner: AsyncIterator[Any] = stream._iterator

        async def watched() -> AsyncIterator[Any]:
            try:
                async for item in inner:
                    self.seen(item)
                    yield item
            except GeneratorExit:
                self.finish()
                raise
            except BaseException as error:
                self.fail(error)
                raise
            self.finish()

        close, target = type(stream).close, weakref.ref(stream)

        async def closed() -> None:
            try:
                if (found := target()) is not None:
                    await close(found)
            finally:
                self.finish()

        stream._iterator, stream.close = watched(), closed


class Patch:
    """The tracer of an instrumented client's calls: `agent_name`'s on `telemetry` (None: the
    process's client), else at each call the current span's, else the current run's agent's."""

    def __init__(self, provider: Provider, agent_name: str | None, telemetry: TelemetryClient | None):
        self.provider = provider
        self.tracer = Tracer(agent_name, telemetry) if agent_name else None
        self.warned = False

    def apply(self, resource: Any) -> None:
        """Record the model calls of `resource` (once, however often it is applied)."""
        post = resource._post
        if getattr(post, PATCHED, False):
            return
        wrapper = self._async_post(post) if inspect.iscoroutinefunction(post) else self._post(post)
        setattr(wrapper, PATCHED, True)
        resource._post = wrapper

    def start(self, path: Any, kwargs: dict[str, Any]) -> LlmCall | None:
        """The call of a request to `path`; None when it is not a model call or has no agent."""
        try:
            if path not in self.provider.paths:
                return None
            tracer = self.tracer or _current_tracer()
            if tracer is None:
                if not self.warned:
                    self.warned = True
                    logger.warning(
                        "telemetry: %s calls not recorded: no agent_name, current span or current run", self.provider.name
                    )
                return None
            body = kwargs.get("body")
            model = body.get("model") if isinstance(body, dict) else None
            return LlmCall(tracer, self.provider, str(model or ""))
        except Exception:
            logger.exception("telemetry: cannot record a %s call (the agent continues)", self.provider.name)
            return None

    def _post(self, post: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(post)
        def recorded(path: Any, *args: Any, **kwargs: Any) -> Any:
            call = self.start(path, kwargs)
            if call is None:
                return post(path, *args, **kwargs)
            try:
                answer = post(path, *args, **kwargs)
            except BaseException as error:
                call.fail(error)
                raise
            return call.answered(answer)

        return recorded

    def _async_post(self, post: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(post)
        async def recorded(path: Any, *args: Any, **kwargs: Any) -> Any:
            call = self.start(path, kwargs)
            if call is None:
                return await post(path, *args, **kwargs)
            try:
                answer = await post(path, *args, **kwargs)
            except BaseException as error:
                call.fail(error)
                raise
            return call.answered(answer)

        return recorded


def instrument(
    client: T,
    provider: Callable[[], Provider],
    kinds: Callable[[], tuple[type, ...]],
    resources: Callable[[Any], list[Any]],
    agent_name: str | None,
    telemetry: TelemetryClient | None,
) -> T:
    """`client` with the model calls of its `resources` recorded; unchanged (logged) when it is not
    one of `kinds` or the library is missing."""
    try:
        if not isinstance(client, kinds()):
            logger.warning("telemetry: cannot instrument a %s: not a client of this library", type(client).__qualname__)
            return client
        patch = Patch(provider(), agent_name, telemetry)
        for resource in resources(client):
            patch.apply(resource)
        _copies_too(client, lambda copy: instrument(copy, provider, kinds, resources, agent_name, telemetry))
    except ImportError as error:
        logger.warning("telemetry: cannot instrument a %s: %s", type(client).__qualname__, error)
    except Exception:
        logger.exception("telemetry: cannot instrument a %s (its calls are not recorded)", type(client).__qualname__)
    return client


def _copies_too(client: Any, again: Callable[[Any], Any]) -> None:
    """The copies `client.with_options(...)` and `client.copy(...)` make instrumented like it."""
    target = weakref.ref(client)  # not the client's own method: a client referring to itself
    for name in ("copy", "with_options"):
        method = getattr(client, name, None)
        if method is None or getattr(method, PATCHED, False):
            continue
        make = getattr(type(client), name)

        def copied(*args: Any, make: Callable[..., Any] = make, **kwargs: Any) -> Any:
            return again(make(target(), *args, **kwargs))

        setattr(copied, PATCHED, True)
        setattr(client, name, copied)
