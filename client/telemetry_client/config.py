"""Where the client connects and keeps its spool, from arguments or the environment.

local-telemetry's variables still work: METRICS_API_URL, METRICS_API_TOKEN and METRICS_API_ENABLED
are read when TELEMETRY_API_URL, TELEMETRY_API_KEY and TELEMETRY_ENABLED are unset.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger("telemetry_client")


FALSE = frozenset({"0", "false", "no", "off"})
TRUE = frozenset({"1", "true", "yes", "on"})


def _default_spool_dir() -> Path:
    state = os.environ.get("XDG_STATE_HOME")
    if state:
        return Path(state) / "telemetry-client"
    try:
        return Path.home() / ".local" / "state" / "telemetry-client"
    except (RuntimeError, KeyError):  # no HOME, and a uid without a passwd entry (containers)
        return Path(tempfile.gettempdir()) / "telemetry-client"


def fallback_spool_dir() -> Path:
    """The spool dir when the configured one is unusable: the user's own in the temporary folder
    (Windows has no uids, and its temporary folder is the user's own)."""
    user = f"-{os.getuid()}" if hasattr(os, "getuid") else ""
    return Path(tempfile.gettempdir()) / f"telemetry-client{user}"


def _env(name: str, fallback: str) -> str:
    """Our variable, else local-telemetry's; stripped, since a key file or a secret often ends in a
    newline, which no header may carry."""
    return (os.environ.get(name, "").strip() or os.environ.get(fallback, "")).strip()


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        logger.warning("telemetry: %s=%r is not a number; using %s", name, raw, default)
        return default
    return value


def _env_enabled() -> bool:
    raw = _env("TELEMETRY_ENABLED", "METRICS_API_ENABLED").lower()
    if raw and raw not in FALSE | TRUE:
        logger.warning("telemetry: TELEMETRY_ENABLED=%r is not true or false; telemetry stays enabled", raw)
    return raw not in FALSE


@dataclass
class TelemetryConfig:
    """How a TelemetryClient behaves. `from_env()` reads the TELEMETRY_* variables."""

    api_url: str | None = None
    api_key: str | None = None
    spool_dir: Path = field(default_factory=_default_spool_dir)
    agent_owner: str | None = None
    enabled: bool = True  # False: every call is a no-op (no spool, no thread, no request)
    batch_size: int = 1000  # records per request (the server takes up to 1000)
    flush_interval: float = 0.2  # seconds a record may wait for its batch to fill
    spool_max_bytes: int = 256 * 1024 * 1024  # beyond this, new records are refused (counted as dropped)
    fsync_interval: float = 1.0  # seconds between fsyncs of the spool (power-loss window)
    exit_flush_timeout: float = 5.0  # seconds the interpreter's exit waits for delivery
    request_timeout: float = 30.0

    @classmethod
    def from_env(cls) -> TelemetryConfig:
        return cls(
            api_url=_env("TELEMETRY_API_URL", "METRICS_API_URL") or None,
            api_key=_env("TELEMETRY_API_KEY", "METRICS_API_TOKEN") or None,
            spool_dir=Path(os.environ.get("TELEMETRY_SPOOL_DIR") or _default_spool_dir()),
            agent_owner=os.environ.get("AGENT_OWNER") or None,
            enabled=_env_enabled(),
            spool_max_bytes=int(_env_number("TELEMETRY_SPOOL_MAX_MB", 256) * 1024 * 1024),
            exit_flush_timeout=_env_number("TELEMETRY_EXIT_FLUSH_SECONDS", 5.0),
        )

    def problems(self) -> list[str]:
        """What is wrong with this configuration; each becomes a warning, never an exception."""
        found = []
        if not self.api_url:
            found.append(f"TELEMETRY_API_URL is not set: records stay in the local spool ({self.spool_dir})")
        elif not str(self.api_url).startswith(("http://", "https://")):
            found.append(f"TELEMETRY_API_URL {self.api_url!r} is not an http(s) URL: records stay in the local spool")
            self.api_url = None
        if self.api_url and not self.api_key:
            found.append("TELEMETRY_API_KEY is not set: the server will refuse the records, which stay in the spool")
        return found
