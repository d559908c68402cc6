"""Questions to the server, as opposed to the recording calls (which are spooled and sent in the
background): each waits for the server's answer and, like everything in the SDK, never raises
into the agent. A failed call is logged and returns the caller's empty answer."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from telemetry_client.client import TelemetryClient
from telemetry_client.config import TelemetryConfig

logger = logging.getLogger("telemetry_client")


class ServerApi:
    """The server and key of `memory` (a TelemetryClient; None: one configured from the
    environment), under the API path `prefix`."""

    def __init__(self, memory: TelemetryClient | None, prefix: str, timeout: float | None = None):
        config = memory.config if memory is not None else TelemetryConfig.from_env()
        headers = {"Authorization": f"Api-Key {config.api_key}"} if config.api_key else {}
        self.prefix = prefix
        self.enabled = bool(config.api_url)
        self.http = httpx.Client(
            base_url=(config.api_url or "").rstrip("/"), headers=headers, timeout=timeout or config.request_timeout
        )

    def call(self, method: str, path: str, empty: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """The JSON answer to `method prefix+path`, or `empty` when there is none."""
        return self.answer(method, path, timeout, **kwargs) or empty

    def answer(self, method: str, path: str, timeout: float | None = None, **kwargs: Any) -> Any:
        """The JSON answer, or None when the server could not be reached or refused (logged)."""
        url = f"{self.prefix}{path}"
        if not self.enabled:
            logger.warning("telemetry: TELEMETRY_API_URL is not set; %s %s not sent", method, url)
            return None
        try:
            response = self.http.request(method, url, timeout=timeout or self.http.timeout, **kwargs)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning("telemetry: %s %s failed: %s", method, url, _reason(exc))
            return None


def _reason(exc: Exception) -> str:
    """The server's own error message when it sent one."""
    if isinstance(exc, httpx.HTTPStatusError):
        try:
            return f"{exc.response.status_code} {exc.response.json()['error']['message']}"
        except (ValueError, KeyError, TypeError):
            return str(exc.response.status_code)
    return str(exc) or type(exc).__name__
