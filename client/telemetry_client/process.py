"""The process's one client: `init()` configures it, `get_client()` returns it (configured from the
environment on first use when init() was not called). Every helper class uses it unless given a
TelemetryClient of its own, and looks it up at each call, so init() reconfigures helpers made
before it too.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from pathlib import Path
from typing import Any

from telemetry_client.client import TelemetryClient
from telemetry_client.config import TelemetryConfig

logger = logging.getLogger("telemetry_client")

INIT_CLOSE_TIMEOUT = 1.0  # what init() waits for the replaced client's records; the rest stay in its spool

_client: TelemetryClient | None = None
_inherited: TelemetryConfig | None = None  # in a forked child: its parent's client's settings
_lock = threading.Lock()
_warned_foreign = False


def init(
    config: TelemetryConfig | None = None,
    *,
    api_url: str | None = None,
    api_key: str | None = None,
    spool_dir: str | Path | None = None,
    enabled: bool | None = None,
) -> TelemetryClient:
    """Make the process's client from these settings (the rest from the environment), closing the
    one before; returns it."""
    global _client
    with _lock:
        previous = _client
        if previous is not None:
            previous.close(INIT_CLOSE_TIMEOUT)
        _client = TelemetryClient(config, api_url=api_url, api_key=api_key, spool_dir=spool_dir, enabled=enabled)
        return _client


def get_client() -> TelemetryClient:
    """The process's client, made from the environment on first use (in a forked child: from its
    parent's client's settings)."""
    global _client
    client = _client
    if client is None:
        with _lock:
            if _client is None:
                _client = TelemetryClient(dataclasses.replace(_inherited) if _inherited else None)
            client = _client
    return client


def _forget_in_child() -> None:
    # A forked child must not write through its parent's spool slot and thread-less sender, nor
    # wait on a lock a parent's thread held at the fork.
    global _client, _inherited, _lock
    _inherited = _client.config if _client is not None else None
    _client, _lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


class UsesClient:
    """A helper's client: the TelemetryClient it was given (`memory`), else the process's.

    Code ported from a Redis-backed API passes its Redis object as `memory`: anything that is not
    a TelemetryClient is ignored, with one warning per process."""

    def __init__(self, memory: Any = None):
        global _warned_foreign
        if memory is not None and not isinstance(memory, TelemetryClient):
            if not _warned_foreign:
                _warned_foreign = True
                logger.warning(
                    "telemetry: memory=%s.%s is not a TelemetryClient (a Redis object?): ignored; using the process's client",
                    type(memory).__module__,
                    type(memory).__qualname__,
                )
            memory = None
        self._memory: TelemetryClient | None = memory

    @property
    def memory(self) -> TelemetryClient:
        return self._memory or get_client()
