"""Questions to the server, as opposed to the recording calls (which are spooled and sent in the
background): each waits for the server's answer and, like everything in the SDK, never raises
into the agent. A failed call is logged and returns the caller's empty answer."""

from __future__ import annotations

from typing import Any

from telemetry_client.client import TelemetryClient
from telemetry_client.process import UsesClient
from telemetry_client.transport import Connections


class ServerApi(UsesClient):
    """The server and key of `memory` (a TelemetryClient; None: the process's client), under the
    API path `prefix`, on connections of this helper's own (kept while it lives)."""

    def __init__(self, memory: TelemetryClient | None, prefix: str, timeout: float | None = None):
        super().__init__(memory)
        self.prefix = prefix
        self.timeout = timeout
        self._connected: tuple[TelemetryClient, Connections | None] | None = None

    @property
    def enabled(self) -> bool:
        return self.memory.enabled

    @property
    def server(self) -> Connections | None:
        return self._connection()[1]

    def _connection(self) -> tuple[TelemetryClient, Connections | None]:
        client = self.memory
        if self._connected is None or self._connected[0] is not client:  # init() made another client
            self._connected = (client, client._connect())
        return self._connected

    def call(self, method: str, path: str, empty: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """The JSON answer to `method prefix+path`, or `empty` when there is none."""
        return self.answer(method, path, timeout, **kwargs) or empty

    def answer(self, method: str, path: str, timeout: float | None = None, body: Any = None, params: dict | None = None) -> Any:
        """The JSON answer to `body` (sent as JSON), or None when the server could not be reached or
        refused (logged). A read first lets this client's own records arrive (TelemetryClient._ask)."""
        client, server = self._connection()
        return client._ask(server, method, f"{self.prefix}{path}", timeout or self.timeout, body, params)
