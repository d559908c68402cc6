"""Where the client connects and keeps its spool, from arguments or the environment."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger("telemetry_client")


def _default_spool_dir() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "telemetry-client"


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        logger.warning("telemetry: %s=%r is not a number; using %s", name, raw, default)
        return default


@dataclass
class TelemetryConfig:
    """How a TelemetryClient behaves. `from_env()` reads the TELEMETRY_* variables."""

    api_url: str | None = None
    api_key: str | None = None
    spool_dir: Path = field(default_factory=_default_spool_dir)
    agent_owner: str | None = None
    batch_size: int = 1000  # records per request (the server takes up to 1000)
    flush_interval: float = 0.2  # seconds a record may wait for its batch to fill
    spool_max_bytes: int = 256 * 1024 * 1024  # beyond this, new records are refused (counted as dropped)
    fsync_interval: float = 1.0  # seconds between fsyncs of the spool (power-loss window)
    exit_flush_timeout: float = 5.0  # seconds the interpreter's exit waits for delivery
    request_timeout: float = 30.0

    @classmethod
    def from_env(cls) -> TelemetryConfig:
        return cls(
            # Stripped: a key file or a secret often ends in a newline, which no header may carry.
            api_url=os.environ.get("TELEMETRY_API_URL", "").strip() or None,
            api_key=os.environ.get("TELEMETRY_API_KEY", "").strip() or None,
            spool_dir=Path(os.environ.get("TELEMETRY_SPOOL_DIR") or _default_spool_dir()),
            agent_owner=os.environ.get("AGENT_OWNER") or None,
            spool_max_bytes=int(_env_number("TELEMETRY_SPOOL_MAX_MB", 256) * 1024 * 1024),
            exit_flush_timeout=_env_number("TELEMETRY_EXIT_FLUSH_SECONDS", 5.0),
        )

    def problems(self) -> list[str]:
        """What is wrong with this configuration; each becomes a warning, never an exception."""
        found = []
        if not self.api_url:
            found.append(f"TELEMETRY_API_URL is not set: records stay in the local spool ({self.spool_dir})")
        elif not self.api_url.startswith(("http://", "https://")):
            found.append(f"TELEMETRY_API_URL {self.api_url!r} is not an http(s) URL: records stay in the local spool")
            self.api_url = None
        if self.api_url and not self.api_key:
            found.append("TELEMETRY_API_KEY is not set: the server will refuse the records, which stay in the spool")
        return found
