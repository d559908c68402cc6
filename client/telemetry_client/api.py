"""Questions to the server, as opposed to the recording calls (which are spooled and sent in the
background): each waits for the server's answer and, like everything in the SDK, never raises
into the agent. A failed call is logged and returns the caller's empty answer.

Each question is written once, as steps (telemetry_client.transport), and has two forms: the
blocking one, and one to await, named `a` + the blocking one's name (`wait_for_signal`,
`await_for_signal`), as Django names its async methods."""

from __future__ import annotations

from telemetry_client.client import TelemetryClient
from telemetry_client.process import UsesClient
from telemetry_client.transport import Steps, T, adrive, drive


class ServerApi(UsesClient):
    """The server and key of `memory` (a TelemetryClient; None: the process's client), under the
    API path `prefix`, each question waiting `timeout` seconds at most unless it says otherwise."""

    def __init__(self, memory: TelemetryClient | None, prefix: str, timeout: float | None = None):
        super().__init__(memory)
        self.prefix = prefix
        self.timeout = timeout

    @property
    def enabled(self) -> bool:
        return self.memory.enabled

    def run(self, steps: Steps[T]) -> T:
        """The result of `steps`, asking in this thread."""
        client = self.memory
        return drive(steps, lambda step: client._ask(step, self.prefix, self.timeout))

    async def arun(self, steps: Steps[T]) -> T:
        """The result of `steps`, asking in the running event loop."""
        client = self.memory
        return await adrive(steps, lambda step: client._aask(step, self.prefix, self.timeout))
