"""Traces from an agent: spans with W3C trace context, recorded when they
end and sent in the background like every record. A trace crosses processes through the W3C
`traceparent` string: pass it in the TRACEPARENT environment variable (the OpenTelemetry
convention) or in a message, and continue the trace there.

    tracer = Tracer("coordinator", client)
    root = tracer.start_trace("orchestration-session", SpanKind.SERVER)
    child = tracer.start_span(root, "coder-execution")
    subprocess.run([...], env={**os.environ, "TRACEPARENT": tracer.propagate(child)})
    tracer.end_span(child)
    tracer.end_span(root)

    # in the sub-agent
    work = Tracer("coder", client).continue_trace(None, "sub-agent-work")  # None: from TRACEPARENT

Spans may carry OpenTelemetry's GenAI attributes (gen_ai.request.model, gen_ai.usage.input_tokens,
...): the server records those as LLM usage too.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, overload

from telemetry_client.client import TelemetryClient
from telemetry_client.common import never_raises, now
from telemetry_client.context import F, current_run, current_span, restore, scoped, span_var
from telemetry_client.process import UsesClient

logger = logging.getLogger("telemetry_client")

ENVIRONMENT_VARIABLE = "TRACEPARENT"
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


class SpanKind:
    INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER = "internal", "server", "client", "producer", "consumer"


class SpanStatusCode:
    UNSET, OK, ERROR = "unset", "ok", "error"


@dataclass(frozen=True)
class SpanContext:
    """What crosses a process boundary: the trace, the span to continue under, and whether it is
    sampled (W3C trace context)."""

    trace_id: str
    span_id: str
    sampled: bool = True

    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    @classmethod
    def from_traceparent(cls, header: str | None) -> SpanContext | None:
        """None when `header` is not a valid version-00 traceparent."""
        found = TRACEPARENT.match((header or "").strip().lower())
        if not found or not found[1].strip("0") or not found[2].strip("0"):
            return None
        return cls(found[1], found[2], bool(int(found[3], 16) & 1))


@dataclass
class Span:
    name: str
    context: SpanContext
    parent_span_id: str = ""
    kind: str = SpanKind.INTERNAL
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    start_time: str = field(default_factory=now)
    end_time: str | None = None
    status: str = SpanStatusCode.UNSET
    status_message: str = ""
    run_id: str | None = None

    @property
    def trace_id(self) -> str:
        return self.context.trace_id

    @property
    def span_id(self) -> str:
        return self.context.span_id


class Tracer(UsesClient):
    """Spans of the agent `agent_name` (the key must be allowed to act as it), recorded by
    `memory` (None: the process's client)."""

    def __init__(self, agent_name: str, memory: TelemetryClient | None = None, service_name: str | None = None):
        super().__init__(memory)
        self.agent_name = agent_name
        self.service_name = service_name or agent_name
        self._lock = threading.Lock()

    def start_trace(self, name: str, kind: str = SpanKind.INTERNAL, attributes: dict[str, Any] | None = None,
                    run_id: str | None = None) -> Span:  # fmt: skip
        """The root span of a new trace. `run_id` (a run of this client; default: the current run,
        when it is one) links the span to it."""
        context = SpanContext(secrets.token_hex(16), secrets.token_hex(8))
        return Span(name, context, kind=kind, attributes=dict(attributes or {}), run_id=run_id or self._current_run_id())

    def start_span(self, parent: Span | SpanContext | None, name: str, kind: str = SpanKind.INTERNAL,
                   attributes: dict[str, Any] | None = None, run_id: str | None = None) -> Span:  # fmt: skip
        """A child of `parent` (a span here, or a context from another process; None: the current
        span, else a new trace)."""
        parent = parent or current_span()
        if parent is None:
            return self.start_trace(name, kind, attributes, run_id)
        context = parent.context if isinstance(parent, Span) else parent
        run_id = run_id or (parent.run_id if isinstance(parent, Span) else None) or self._current_run_id()
        child = SpanContext(context.trace_id, secrets.token_hex(8), context.sampled)
        return Span(name, child, parent_span_id=context.span_id, kind=kind, attributes=dict(attributes or {}), run_id=run_id)

    def _current_run_id(self) -> str | None:
        run = current_run()
        return run.run_id if run is not None and run._client is self.memory else None

    def propagate(self, span: Span | None = None) -> str:
        """The `traceparent` to hand to a sub-agent (environment variable or message) to continue
        `span` (default: the current span; "" when there is none)."""
        span = span or current_span()
        return span.context.traceparent() if span else ""

    def extract(self, header: str | None = None) -> SpanContext | None:
        """The context in a `traceparent` string (default: the TRACEPARENT environment variable)."""
        return SpanContext.from_traceparent(header if header is not None else os.environ.get(ENVIRONMENT_VARIABLE))

    def continue_trace(self, context: SpanContext | str | None, name: str, kind: str = SpanKind.INTERNAL,
                       attributes: dict[str, Any] | None = None, run_id: str | None = None) -> Span:  # fmt: skip
        """A span under a context from elsewhere (a SpanContext, a traceparent, or None: the
        TRACEPARENT environment variable); a new trace when there is none or it is not valid."""
        if not isinstance(context, SpanContext):
            context = self.extract(context)
        if context is None:
            return self.start_trace(name, kind, attributes, run_id)
        return self.start_span(context, name, kind, attributes, run_id)

    def set_attributes(self, span: Span, attributes: dict[str, Any]) -> None:
        span.attributes.update(attributes)

    def add_event(self, span: Span, name: str, attributes: dict[str, Any] | None = None) -> None:
        span.events.append({"name": name, "timestamp": now(), "attributes": dict(attributes or {})})

    def record_error(self, span: Span, error: BaseException) -> None:
        """An `exception` event (OpenTelemetry's), and the span's status set to error."""
        self.add_event(span, "exception", {"exception.type": type(error).__name__, "exception.message": str(error)})
        span.status, span.status_message = SpanStatusCode.ERROR, str(error)

    @never_raises(default=False)
    def end_span(self, span: Span, status: str | None = None, message: str = "") -> bool:
        """End the span and record it (once; a span ended twice is recorded once). Unless `status`
        is given, a span keeps the error status record_error gave it, else ends `ok`."""
        with self._lock:
            if span.end_time is not None:
                return False
            span.end_time = now()
        if status is not None:
            span.status, span.status_message = status, message or span.status_message
        elif span.status == SpanStatusCode.UNSET:
            span.status = SpanStatusCode.OK
        if not span.context.sampled:
            return True
        record = {
            "kind": "span",
            "trace_id": span.trace_id,
            "span_id": span.span_id,
            "parent_span_id": span.parent_span_id,
            "name": span.name,
            "span_kind": span.kind,
            "status": span.status,
            "status_message": span.status_message[:2000],
            "start_time": span.start_time,
            "end_time": span.end_time,
            "agent_name": self.agent_name,
            "service_name": self.service_name,
            "attributes": span.attributes,
            "events": span.events[:128],
        }
        if event_id := self.memory._run_event_id(span.run_id, "end_span"):
            record["run_event_id"] = event_id
        return self.memory._record(record)

    def span(self, name: str, parent: Span | SpanContext | None = None, kind: str = SpanKind.INTERNAL,
             attributes: dict[str, Any] | None = None) -> SpanBlock:  # fmt: skip
        """A span around a block (`with tracer.span(...) as span:`), the current span inside it: a
        child of `parent`, else of the current span, else of the TRACEPARENT environment
        variable's context, else a new trace. An exception in the block is recorded on it (and
        raised on)."""
        return SpanBlock(self, self.start_span(parent or current_span() or self.extract(), name, kind, attributes))

    @overload
    def traced(self, name: F) -> F: ...
    @overload
    def traced(self, name: str | None = None, kind: str = SpanKind.INTERNAL,
               attributes: dict[str, Any] | None = None) -> Callable[[F], F]: ...  # fmt: skip
    def traced(self, name: str | Callable[..., Any] | None = None, kind: str = SpanKind.INTERNAL,
               attributes: dict[str, Any] | None = None) -> Callable[..., Any]:  # fmt: skip
        """A decorator: each call of the function (a coroutine's await, a generator's iteration)
        in a span, `self.span(name or the function's qualified name, ...)`. `@tracer.traced` too."""
        if callable(name):
            return self.traced()(name)

        def decorate(fn: F) -> F:
            span_name = name or fn.__qualname__
            return scoped(fn, lambda: self.span(span_name, kind=kind, attributes=attributes))

        return decorate


class SpanBlock:
    """Tracer.span's block: a class, as a @contextmanager's generator added about 4 µs to each span."""

    __slots__ = ("span", "token", "tracer")

    def __init__(self, tracer: Tracer, span: Span):
        self.tracer, self.span = tracer, span

    def __enter__(self) -> Span:
        self.token = span_var.set((self.span, self.tracer))
        return self.span

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: Any) -> None:
        restore(span_var, self.token)
        if error is not None:
            self.tracer.record_error(self.span, error)
        self.tracer.end_span(self.span)
