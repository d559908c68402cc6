"""The run and the span the running code is in, in contextvars: they follow the code into asyncio
tasks and into threads started with a copied context (`contextvars.copy_context().run`), and
not into other threads. `scoped` is what the decorators share: a block around each call of a
function, a coroutine or a generator (sync or async)."""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from telemetry_client.runs import RunContext
    from telemetry_client.tracing import Span, Tracer

run_var: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar("telemetry_run", default=None)
span_var: contextvars.ContextVar[tuple[Span, Tracer] | None] = contextvars.ContextVar("telemetry_span", default=None)

F = TypeVar("F", bound=Callable[..., Any])
Scope = Callable[[], AbstractContextManager[Any]]


def current_run() -> RunContext | None:
    """The run the calling code is in (`track_run`), or None."""
    return run_var.get()


def current_span() -> Span | None:
    """The span the calling code is in (`traced`, `Tracer.span`), or None."""
    found = span_var.get()
    return found[0] if found else None


def restore(var: contextvars.ContextVar[Any], token: contextvars.Token[Any]) -> None:
    try:
        var.reset(token)
    except ValueError:  # set in another context: a generator with a `with` inside resumed elsewhere
        var.set(None if token.old_value is contextvars.Token.MISSING else token.old_value)


def scoped(fn: F, scope: Scope) -> F:
    """`fn` with a new `scope()` around each call: a function's call, a coroutine's await, a
    generator's iteration (first next() to exhaustion or close)."""
    # Each wrapper takes and returns what `fn` does (functools.wraps), which mypy cannot see.
    if inspect.isasyncgenfunction(fn):
        return cast(F, _async_generator(fn, scope))
    if inspect.isgeneratorfunction(fn):
        return cast(F, _generator(fn, scope))
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def awaited(*args: Any, **kwargs: Any) -> Any:
            with scope():
                return await fn(*args, **kwargs)

        return cast(F, awaited)

    @functools.wraps(fn)
    def called(*args: Any, **kwargs: Any) -> Any:
        with scope():
            return fn(*args, **kwargs)

    return cast(F, called)


# A generator's body runs in a context of its own, entered at each step and left at each yield,
# so the run and span it sets are seen by its body only, never by its consumer between yields.


def _stepped(context: contextvars.Context, inner: Any) -> Generator[Any, Any, Any]:
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


def _generator(fn: Callable[..., Any], scope: Scope) -> Callable[..., Generator[Any, Any, Any]]:
    @functools.wraps(fn)
    def generator(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
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

    def __await__(self) -> Generator[Any, Any, Any]:
        return (yield from _stepped(self.context, self.awaitable.__await__()))


def _async_generator(fn: Callable[..., Any], scope: Scope) -> Callable[..., AsyncGenerator[Any, Any]]:
    @functools.wraps(fn)
    async def generator(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
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
