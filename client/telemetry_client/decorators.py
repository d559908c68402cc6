"""Decorators on the process's client, and the calls that act on the current run without naming
it.

    @telemetry_client.track_run("my_agent", "crawl")
    async def crawl(url):
        telemetry_client.log_event("fetch", {"url": url})  # on crawl's run
        return await parse(url)

    @telemetry_client.traced()  # a span, under the current one, of the current run's agent
    async def parse(url): ...
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any, overload

from telemetry_client.context import F, current_run, scoped, span_var
from telemetry_client.process import get_client
from telemetry_client.tracing import SpanKind, Tracer

logger = logging.getLogger("telemetry_client")


def track_run(agent_name: str, job_type: str, trigger_type: str = "cli", **fields: Any) -> Callable[[F], F]:
    """A decorator: each call of the function (a coroutine's await, a generator's iteration) in a
    run of the process's client, `get_client().track_run(...)`, the current run inside it."""

    def decorate(fn: F) -> F:
        return scoped(fn, lambda: get_client().track_run(agent_name, job_type, trigger_type, **fields))

    return decorate


@overload
def traced(name: F) -> F: ...
@overload
def traced(name: str | None = None, *, agent_name: str | None = None, kind: str = SpanKind.INTERNAL,
           attributes: dict[str, Any] | None = None) -> Callable[[F], F]: ...  # fmt: skip
def traced(name: str | Callable[..., Any] | None = None, *, agent_name: str | None = None, kind: str = SpanKind.INTERNAL,
           attributes: dict[str, Any] | None = None) -> Callable[..., Any]:  # fmt: skip
    """A decorator: each call in a span named `name` (default: the function's qualified name), a
    child of the current span. Its agent is `agent_name` (on the process's client), else the
    current span's, else the current run's; with none of them the call runs without a span (one
    warning). `@traced` too."""
    if callable(name):
        return traced()(name)
    fixed = Tracer(agent_name) if agent_name else None

    def decorate(fn: F) -> F:
        span_name = name or fn.__qualname__
        warned = False

        def scope() -> contextlib.AbstractContextManager[Any]:
            nonlocal warned
            tracer = fixed or _current_tracer()
            if tracer is not None:
                return tracer.span(span_name, kind=kind, attributes=attributes)
            if not warned:
                warned = True
                logger.warning("telemetry: %s runs without a span: no agent_name, current span or current run", span_name)
            return contextlib.nullcontext()

        return scoped(fn, scope)

    return decorate


def _current_tracer() -> Tracer | None:
    span = span_var.get()
    if span is not None:
        return span[1]
    run = current_run()
    return Tracer(run.agent_name, run._client) if run is not None else None


def log_event(event_type: str, payload: dict[str, Any] | None = None) -> None:
    """An event in the current run (`client.log_event(run_id, ...)` names its run)."""
    run = current_run()
    if run is None:
        logger.warning("telemetry: log_event(%r) outside any run ignored", event_type)
        return
    run.log_event(event_type, payload)


def set_metrics(**fields: Any) -> None:
    """Run fields (item counts, summaries, metrics_json...) of the current run, sent when it ends."""
    run = current_run()
    if run is None:
        logger.warning("telemetry: set_metrics() outside any run ignored")
        return
    run.set_metrics(**fields)
