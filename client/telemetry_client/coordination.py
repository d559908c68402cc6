"""Heartbeats and coordination signals: HeartbeatCoordinator, AgentHeartbeat,
CoordinationSignals and CoordinationSignal, over the server's coordination API.

These are questions to the server (telemetry_client.api): a failed call is logged and returns an
empty answer (None, "", [], 0 or False), never an exception. The key decides who an agent is:
a signal's source is the key's agent, and a key cannot beat or signal as another agent.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from telemetry_client.api import ServerApi
from telemetry_client.client import TelemetryClient
from telemetry_client.transport import Ask, Pause, Steps

logger = logging.getLogger("telemetry_client")

# A beat or a send is one quick request: a dead server must not hold the agent for long.
QUICK_TIMEOUT = 5.0


def parse_time(raw: str | None) -> datetime:
    return datetime.fromisoformat(raw) if raw else datetime.now(timezone.utc)


@dataclass
class AgentHeartbeat:
    """One agent's latest heartbeat."""

    agent_id: str
    status: str
    progress: float
    current_task: str
    last_beat: datetime
    metadata: dict[str, Any] = field(default_factory=dict)
    display_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "status": self.status,
            "progress": self.progress,
            "current_task": self.current_task,
            "last_beat": self.last_beat.isoformat(),
            "metadata": self.metadata,
            "display_name": self.display_name,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentHeartbeat:
        return cls(
            agent_id=data["agent_id"],
            status=data.get("status", ""),
            progress=float(data.get("progress") or 0.0),
            current_task=data.get("current_task", ""),
            last_beat=parse_time(data.get("last_beat")),
            metadata=data.get("metadata") or {},
            display_name=data.get("display_name"),
        )


class HeartbeatCoordinator:
    """Tell the server this agent is alive and what it is doing; ask about the others.

    `start_heartbeat(..., interval=10)` also keeps beating from a background (daemon) thread
    every `interval` seconds with the latest status, progress and task given to `beat()`, until
    `stop_heartbeat()`. `enable_streaming` is accepted for compatibility: the server always
    announces starts, stops, stale agents and recoveries on its event streams.
    """

    def __init__(self, memory: TelemetryClient | None = None, enable_streaming: bool = False):
        self._api = ServerApi(memory, "/api/v1/agents", timeout=QUICK_TIMEOUT)
        self.agent_id: str | None = None
        self._state = {"status": "running", "progress": 0.0, "current_task": ""}
        self._beating: threading.Event | None = None

    def start_heartbeat(
        self,
        agent_id: str,
        metadata: dict[str, Any] | None = None,
        display_name: str | None = None,
        *,
        interval: float | None = None,
        stale_after_seconds: float | None = None,
    ) -> None:
        """Register and begin a heartbeat for `agent_id` (beating again from a thread every
        `interval` seconds if given; `stale_after_seconds`: this agent's own stale threshold)."""
        self._api.run(self._starting(agent_id, metadata, display_name, interval, stale_after_seconds))

    async def astart_heartbeat(
        self,
        agent_id: str,
        metadata: dict[str, Any] | None = None,
        display_name: str | None = None,
        *,
        interval: float | None = None,
        stale_after_seconds: float | None = None,
    ) -> None:
        """`start_heartbeat`, awaited (the beats every `interval` still go from a thread)."""
        await self._api.arun(self._starting(agent_id, metadata, display_name, interval, stale_after_seconds))

    def _starting(
        self, agent_id: str, metadata: dict[str, Any] | None, display_name: str | None, interval: float | None,
        stale_after_seconds: float | None,
    ) -> Steps[None]:  # fmt: skip
        self._stop_thread()
        self.agent_id = agent_id
        body = {"metadata": metadata or {}, "display_name": display_name, "stale_after_seconds": stale_after_seconds}
        yield Ask("POST", f"/{agent_id}/heartbeat/start", body, idempotent=True)
        if interval and self._api.enabled:
            self._beating = threading.Event()
            thread = threading.Thread(
                target=self._beat_every, args=(interval, self._beating), name="telemetry-heartbeat", daemon=True
            )
            thread.start()

    def beat(self, status: str = "running", progress: float = 0.0, current_task: str = "") -> None:
        """Emit one heartbeat with the current status and progress (0-1, or a percentage)."""
        self._state = {"status": status, "progress": progress, "current_task": current_task}
        self._api.run(self._beating_once())

    async def abeat(self, status: str = "running", progress: float = 0.0, current_task: str = "") -> None:
        self._state = {"status": status, "progress": progress, "current_task": current_task}
        await self._api.arun(self._beating_once())

    def stop_heartbeat(self, final_status: str = "completed") -> None:
        """Stop beating and record a final status; the agent is then neither active nor stale."""
        self._api.run(self._stopping(final_status))

    async def astop_heartbeat(self, final_status: str = "completed") -> None:
        await self._api.arun(self._stopping(final_status))

    def _stopping(self, final_status: str) -> Steps[None]:
        self._stop_thread()
        if self._require_agent("stop_heartbeat"):
            yield Ask("POST", f"/{self.agent_id}/heartbeat/stop", {"final_status": final_status}, idempotent=True)

    def get_active_agents(self) -> list[AgentHeartbeat]:
        return self._api.run(self._agents("/active", None))

    async def aget_active_agents(self) -> list[AgentHeartbeat]:
        return await self._api.arun(self._agents("/active", None))

    def is_agent_alive(self, agent_id: str) -> bool:
        """Whether `agent_id` beat within its threshold and has not stopped."""
        return self._api.run(self._alive(agent_id))

    async def ais_agent_alive(self, agent_id: str) -> bool:
        return await self._api.arun(self._alive(agent_id))

    def _alive(self, agent_id: str) -> Steps[bool]:
        return bool((yield Ask("GET", f"/{agent_id}", empty={})).get("alive", False))

    def get_agent_status(self, agent_id: str) -> AgentHeartbeat | None:
        return self._api.run(self._status(agent_id))

    async def aget_agent_status(self, agent_id: str) -> AgentHeartbeat | None:
        return await self._api.arun(self._status(agent_id))

    def _status(self, agent_id: str) -> Steps[AgentHeartbeat | None]:
        raw = yield Ask("GET", f"/{agent_id}")
        return AgentHeartbeat.from_dict(raw) if raw else None

    def get_stale_agents(self, threshold_seconds: float = 60.0) -> list[AgentHeartbeat]:
        """Agents that have not stopped but are silent for more than `threshold_seconds`."""
        return self._api.run(self._agents("/stale", threshold_seconds))

    async def aget_stale_agents(self, threshold_seconds: float = 60.0) -> list[AgentHeartbeat]:
        return await self._api.arun(self._agents("/stale", threshold_seconds))

    def _agents(self, path: str, threshold_seconds: float | None) -> Steps[list[AgentHeartbeat]]:
        found = yield Ask("GET", path, params={"threshold_seconds": threshold_seconds}, empty=[])
        return [AgentHeartbeat.from_dict(raw) for raw in found]

    def _beating_once(self) -> Steps[None]:
        if self._require_agent("beat"):
            yield Ask("POST", f"/{self.agent_id}/heartbeat", self._state, idempotent=True)

    def _beat_every(self, interval: float, stopped: threading.Event) -> None:
        while not stopped.wait(interval):
            self._api.run(self._beating_once())

    def _stop_thread(self) -> None:
        if self._beating is not None:
            self._beating.set()
            self._beating = None

    def _require_agent(self, call: str) -> bool:
        if self.agent_id is None:
            logger.warning("telemetry: %s() before start_heartbeat(); nothing sent", call)
        return self.agent_id is not None


@dataclass
class CoordinationSignal:
    """A typed message from one agent to another (or to all), alive for `ttl_seconds`."""

    signal_id: str
    signal_type: str
    source_agent: str
    target_agent: str | None
    payload: dict[str, Any]
    timestamp: datetime
    ttl_seconds: int = 60

    def to_dict(self) -> dict[str, Any]:
        return {
            "signal_id": self.signal_id,
            "signal_type": self.signal_type,
            "source_agent": self.source_agent,
            "target_agent": self.target_agent,
            "payload": self.payload,
            "timestamp": self.timestamp.isoformat(),
            "ttl_seconds": self.ttl_seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CoordinationSignal:
        return cls(
            signal_id=data["signal_id"],
            signal_type=data["signal_type"],
            source_agent=data.get("source_agent", ""),
            target_agent=data.get("target_agent"),
            payload=data.get("payload") or {},
            timestamp=parse_time(data.get("timestamp")),
            ttl_seconds=int(data.get("ttl_seconds") or 60),
        )


class CoordinationSignals:
    """Send signals to other agents and receive this agent's (`agent_id`; None: the key's agent).

    A directed signal is delivered once, to its target; a broadcast once to each other agent; an
    expired one never. `wait_for_signal` returns as soon as a signal arrives: the server wakes the
    wait, nothing polls. `poll_interval` is kept for compatibility and is only the pause before
    asking again when the server cannot be reached. `credentials` and `enable_streaming` are
    accepted for compatibility: the key is the credential, and the server announces every signal
    on its `signal.sent` stream.
    """

    def __init__(self, memory: TelemetryClient | None = None, agent_id: str | None = None, enable_streaming: bool = False):
        self._api = ServerApi(memory, "/api/v1/signals", timeout=QUICK_TIMEOUT)
        self.agent_id = agent_id

    def signal(
        self,
        signal_type: str,
        source_agent: str | None = None,
        target_agent: str | None = None,
        payload: dict[str, Any] | None = None,
        ttl_seconds: int | None = None,
        credentials: Any = None,
    ) -> str:
        """Send a signal to `target_agent` (None: to every agent); its id, or "" if not sent."""
        return self._api.run(self._sending(signal_type, source_agent, target_agent, payload, ttl_seconds))

    async def asignal(
        self,
        signal_type: str,
        source_agent: str | None = None,
        target_agent: str | None = None,
        payload: dict[str, Any] | None = None,
        ttl_seconds: int | None = None,
        credentials: Any = None,
    ) -> str:
        return await self._api.arun(self._sending(signal_type, source_agent, target_agent, payload, ttl_seconds))

    def broadcast(
        self,
        signal_type: str,
        source_agent: str | None = None,
        payload: dict[str, Any] | None = None,
        ttl_seconds: int | None = None,
        credentials: Any = None,
    ) -> str:
        """Send a signal to every agent but the sender; its id, or "" if not sent."""
        return self._api.run(self._sending(signal_type, source_agent, None, payload, ttl_seconds))

    async def abroadcast(
        self,
        signal_type: str,
        source_agent: str | None = None,
        payload: dict[str, Any] | None = None,
        ttl_seconds: int | None = None,
        credentials: Any = None,
    ) -> str:
        return await self._api.arun(self._sending(signal_type, source_agent, None, payload, ttl_seconds))

    def _sending(
        self, signal_type: str, source_agent: str | None, target_agent: str | None, payload: dict[str, Any] | None,
        ttl_seconds: int | None,
    ) -> Steps[str]:  # fmt: skip
        body = {
            "signal_type": signal_type,
            "source_agent": source_agent or self.agent_id,
            "target_agent": target_agent,
            "payload": payload or {},
            "ttl_seconds": ttl_seconds,
        }
        answer: dict[str, str] = yield Ask("POST", "", body, empty={})
        return answer.get("signal_id", "")

    def wait_for_signal(
        self, signal_type: str, source_agent: str | None = None, timeout: float = 30.0, poll_interval: float = 0.5
    ) -> CoordinationSignal | None:
        """Take the next matching signal, waiting up to `timeout` seconds for one; None if none came."""
        return self._api.run(self._waiting(signal_type, source_agent, timeout, poll_interval))

    async def await_for_signal(
        self, signal_type: str, source_agent: str | None = None, timeout: float = 30.0, poll_interval: float = 0.5
    ) -> CoordinationSignal | None:
        """`wait_for_signal`, awaited. Cancelling the task ends its wait on the server, which then
        takes nothing: a signal sent after goes to the next wait."""
        return await self._api.arun(self._waiting(signal_type, source_agent, timeout, poll_interval))

    def _waiting(
        self, signal_type: str, source_agent: str | None, timeout: float, poll_interval: float
    ) -> Steps[CoordinationSignal | None]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(deadline - time.monotonic(), 0.0)
            found = yield self._receive(signal_type, source_agent, consume=True, timeout=remaining)
            if found is not None and found.get("signal"):
                return CoordinationSignal.from_dict(found["signal"])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if found is None:  # the server could not be asked: pause before asking again
                if not self._api.enabled:
                    return None
                yield Pause(min(poll_interval, remaining))

    def check_signal(self, signal_type: str, source_agent: str | None = None, consume: bool = True) -> CoordinationSignal | None:
        """The next matching signal if there is one now (taken, or only looked at with consume=False)."""
        return self._api.run(self._checking(signal_type, source_agent, consume))

    async def acheck_signal(
        self, signal_type: str, source_agent: str | None = None, consume: bool = True
    ) -> CoordinationSignal | None:
        return await self._api.arun(self._checking(signal_type, source_agent, consume))

    def _checking(self, signal_type: str, source_agent: str | None, consume: bool) -> Steps[CoordinationSignal | None]:
        found = ((yield self._receive(signal_type, source_agent, consume=consume, timeout=0)) or {}).get("signal")
        return CoordinationSignal.from_dict(found) if found else None

    def get_pending_signals(self, signal_type: str | None = None) -> list[CoordinationSignal]:
        """Every signal this agent would receive now, oldest first (none is taken)."""
        return self._api.run(self._pending(signal_type))

    async def aget_pending_signals(self, signal_type: str | None = None) -> list[CoordinationSignal]:
        return await self._api.arun(self._pending(signal_type))

    def _pending(self, signal_type: str | None) -> Steps[list[CoordinationSignal]]:
        found = yield Ask("GET", "", params=self._agent_params(signal_type), empty=[])
        return [CoordinationSignal.from_dict(raw) for raw in found]

    def clear_signals(self, signal_type: str | None = None) -> int:
        """Drop this agent's pending signals; how many."""
        return self._api.run(self._clearing(signal_type))

    async def aclear_signals(self, signal_type: str | None = None) -> int:
        return await self._api.arun(self._clearing(signal_type))

    def _clearing(self, signal_type: str | None) -> Steps[int]:
        return int((yield Ask("DELETE", "", params=self._agent_params(signal_type), empty={})).get("cleared", 0))

    def _receive(self, signal_type: str, source_agent: str | None, consume: bool, timeout: float) -> Ask:
        body = {
            "agent_id": self.agent_id,
            "signal_type": signal_type or "",
            "source_agent": source_agent or "",
            "consume": consume,
            "timeout": timeout,
        }
        # The server holds a wait for at most LONG_WAIT_MAX_SECONDS and then answers null. Taking
        # is not repeatable (the lost answer may have held the signal); looking is.
        return Ask("POST", "/receive", body, timeout=timeout + QUICK_TIMEOUT, idempotent=not consume)

    def _agent_params(self, signal_type: str | None) -> dict[str, str]:
        params = {"agent_id": self.agent_id, "signal_type": signal_type}
        return {name: value for name, value in params.items() if value}
