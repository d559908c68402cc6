"""The run and the span the running code is in, in contextvars: they follow the code into asyncio
tasks and into threads started with a copied context (`contextvars.copy_context().run`), and
not into other threads. `scoped` is what the decorators share: a block around each call of a
function, a coroutine or a generator (sync or async)."""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from telemetry_client.runs import RunContext
    from telemetry_client.tracing import Span, Tracer

run_var: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar("telemetry_run", default=None)
span_var: contextvars.ContextVar[tuple[Span, Tracer] | None] = contextvars.ContextVar("telemetry_span", default=None)


def current_run() -> RunContext | None:
    """The run the calling code is in (`track_run`), or None."""
    return run_var.get()


def current_span() -> Span | None:
    """The span the calling code is in (`traced`, `Tracer.span`), or None."""
    found = span_var.get()
    return found[0] if found else None


def restore(var: contextvars.ContextVar, token: contextvars.Token) -> None:
    try:
        var.reset(token)
    except ValueError:  # set in another context: a generator with a `with` inside resumed elsewhere
        var.set(None if token.old_value is contextvars.Token.MISSING else token.old_value)


def scoped(fn: Callable, scope: Callable[[], AbstractContextManager]) -> Callable:
    """`fn` with a new `scope()` around each call: a function's call, a coroutine's await, a
    generator's iteration (first next() to exhaustion or close)."""
    if inspect.isasyncgenfunction(fn):
        return _async_generator(fn, scope)
    if inspect.isgeneratorfunction(fn):
        return _generator(fn, scope)
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def awaited(*args, **kwargs):
            with scope():
                return await fn(*args, **kwargs)

        return awaited

    @functools.wraps(fn)
    def called(*args, **kwargs):
        with scope():
            return fn(*args, **kwargs)

    return called


# A generator's body runs in a context of its own, entered at each step and left at each yield,
# so the run and span it sets are seen by its body only, never by its consumer between yields.


def _stepped(context: contextvars.Context, inner: Any):
    """`yield from inner` with each step of `inner` run in `context`."""
    step, value = inner.send, None
    while True:
        try:
            item = context.run(step, value)
        except StopIteration as stop:
            return stop.value
        try:
            value, step = (yield item), inner.send
        except GeneratorExit:
            context.run(inner.close)
            raise
        except BaseException as error:  # noqa: BLE001 - thrown in by the consumer: on to the body
            step, value = inner.throw, error


def _generator(fn: Callable, scope: Callable[[], AbstractContextManager]) -> Callable:
    @functools.wraps(fn)
    def generator(*args, **kwargs):
        context = contextvars.copy_context()
        block = scope()
        context.run(block.__enter__)
        try:
            result = yield from _stepped(context, fn(*args, **kwargs))
        except GeneratorExit:  # the consumer stopped early: an ordinary end
            context.run(block.__exit__, None, None, None)
            raise
        except BaseException as error:
            if not context.run(block.__exit__, type(error), error, error.__traceback__):
                raise
            return None
        context.run(block.__exit__, None, None, None)
        return result

    return generator


class _InContext:
    """An awaitable run step by step in `context`."""

    __slots__ = ("awaitable", "context")

    def __init__(self, context: contextvars.Context, awaitable: Any):
        self.context, self.awaitable = context, awaitable

    def __await__(self):
        return (yield from _stepped(self.context, self.awaitable.__await__()))


def _async_generator(fn: Callable, scope: Callable[[], AbstractContextManager]) -> Callable:
    @functools.wraps(fn)
    async def generator(*args, **kwargs):
        context = contextvars.copy_context()
        block = scope()
        context.run(block.__enter__)
        inner = fn(*args, **kwargs)
        try:
            step, value = inner.asend, None
            while True:
                try:
                    item = await _InContext(context, step(value))
                except StopAsyncIteration:
                    break
                try:
                    value, step = (yield item), inner.asend
                except GeneratorExit:
                    await _InContext(context, inner.aclose())
                    raise
                except BaseException as error:  # noqa: BLE001 - thrown in by the consumer: on to the body
                    step, value = inner.athrow, error
        except GeneratorExit:
            context.run(block.__exit__, None, None, None)
            raise
        except BaseException as error:
            if not context.run(block.__exit__, type(error), error, error.__traceback__):
                raise
            return
        context.run(block.__exit__, None, None, None)

    return generator
