"""What every module of the SDK shares: its logger, the time stamp of a record, the JSON of a record
or a request body, and the guard that keeps a call from raising into the agent."""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

logger = logging.getLogger("telemetry_client")

F = TypeVar("F", bound=Callable[..., Any])


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


def to_json(value: Any) -> bytes:
    """A record or a request body: compact, and what JSON lacks (a datetime, a Path) as a string."""
    return json.dumps(value, separators=(",", ":"), default=str).encode()


def never_raises(default: Any = None) -> Callable[[F], F]:
    """Telemetry must not break the agent: log what goes wrong and return `default` (a coroutine
    function's too)."""

    def decorate(method: F) -> F:
        if inspect.iscoroutinefunction(method):

            @functools.wraps(method)
            async def awaited(self: Any, *args: Any, **kwargs: Any) -> Any:
                try:
                    return await method(self, *args, **kwargs)
                except Exception:  # not a cancellation: that goes on to the caller
                    logger.exception("telemetry: %s failed (the agent continues)", method.__name__)
                    return default

            return awaited  # type: ignore[return-value]

        @functools.wraps(method)
        def safe(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except Exception:
                logger.exception("telemetry: %s failed (the agent continues)", method.__name__)
                return default

        return safe  # type: ignore[return-value]

    return decorate
