"""Human approval gates: ApprovalGate, ApprovalRequest and ApprovalResponse, over the
server's approvals API. A person decides in the server's admin; the agent blocks (or awaits,
`arequest_approval`) until then.

It fails closed: when the server cannot be asked, `request_approval` answers approved=False with
the reason, never an exception and never a yes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from telemetry_client.api import ServerApi
from telemetry_client.client import TelemetryClient
from telemetry_client.coordination import QUICK_TIMEOUT, parse_time
from telemetry_client.transport import Ask, Pause, Steps

logger = logging.getLogger("telemetry_client")

# The server holds one wait at most LONG_WAIT_MAX_SECONDS (60 by default); the gate asks again.
WAIT_STEP = 55.0
# Pause before asking again when the server could not be reached.
RETRY_PAUSE = 1.0


@dataclass
class ApprovalRequest:
    request_id: str
    approval_type: str
    agent_id: str
    context: dict[str, Any]
    timestamp: datetime
    timeout_seconds: float
    status: str = "pending"

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "approval_type": self.approval_type,
            "agent_id": self.agent_id,
            "context": self.context,
            "timestamp": self.timestamp.isoformat(),
            "timeout_seconds": self.timeout_seconds,
            "status": self.status,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ApprovalRequest:
        return cls(
            request_id=data["request_id"],
            approval_type=data.get("approval_type", ""),
            agent_id=data.get("agent_id", ""),
            context=data.get("context") or {},
            timestamp=parse_time(data.get("timestamp")),
            timeout_seconds=float(data.get("timeout_seconds") or 0),
            status=data.get("status", "pending"),
        )


@dataclass
class ApprovalResponse:
    request_id: str
    approved: bool
    responder: str
    reason: str = ""
    timestamp: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "approved": self.approved,
            "responder": self.responder,
            "reason": self.reason,
            "timestamp": self.timestamp.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ApprovalResponse:
        return cls(
            request_id=data.get("request_id", ""),
            approved=bool(data.get("approved")),
            responder=data.get("responder") or "",
            reason=data.get("reason") or "",
            timestamp=parse_time(data.get("timestamp")),
        )


class ApprovalGate:
    """Ask a person for approval and wait for the answer (`agent_id`; None: the key's agent)."""

    def __init__(self, memory: TelemetryClient | None = None, agent_id: str | None = None):
        self._api = ServerApi(memory, "/api/v1/approvals", timeout=QUICK_TIMEOUT)
        self.agent_id = agent_id

    def request_approval(
        self, approval_type: str, context: dict[str, Any] | None = None, timeout: float | None = None
    ) -> ApprovalResponse:
        """Ask, then block until a person decides or `timeout` seconds pass (None: the server's
        default, APPROVAL_DEFAULT_TIMEOUT). After the timeout the request is expired and the
        answer is approved=False with the reason."""
        return self._api.run(self._requesting(approval_type, context, timeout))

    async def arequest_approval(
        self, approval_type: str, context: dict[str, Any] | None = None, timeout: float | None = None
    ) -> ApprovalResponse:
        """`request_approval`, awaited. Cancelling the task ends its wait on the server; the
        request stays pending until a person decides or it expires."""
        return await self._api.arun(self._requesting(approval_type, context, timeout))

    def _requesting(self, approval_type: str, context: dict[str, Any] | None, timeout: float | None) -> Steps[ApprovalResponse]:
        body = {"approval_type": approval_type, "agent_id": self.agent_id, "context": context or {}, "timeout_seconds": timeout}
        created = yield Ask("POST", "", body)
        if not created:
            reason = "Not approved: the telemetry server could not be asked."
            if not self._api.enabled:
                reason = "Not approved: telemetry is disabled (TELEMETRY_ENABLED=false)."
            return ApprovalResponse("", approved=False, responder="", reason=reason)
        request_id = created["request_id"]
        deadline = time.monotonic() + float(created["timeout_seconds"]) + QUICK_TIMEOUT
        while True:
            step = min(max(deadline - time.monotonic(), 0.0), WAIT_STEP)
            # Waiting changes nothing on the server: a wait whose answer was lost is asked again.
            found = yield Ask("POST", f"/{request_id}/wait", {"timeout": step}, timeout=step + QUICK_TIMEOUT, idempotent=True)
            if found and found.get("decision"):
                return ApprovalResponse.from_dict(found["decision"])
            if time.monotonic() >= deadline:
                reason = "Not approved: no decision could be learned before the timeout."
                return ApprovalResponse(request_id, approved=False, responder="", reason=reason)
            if found is None:
                yield Pause(RETRY_PAUSE)

    def respond_to_approval(self, request_id: str, approved: bool, responder: str, reason: str = "") -> bool:
        """Decide a request. Only people with the approve permission may (in the admin, or the API
        with their session): with an agent key the server refuses, and this returns False."""
        return self._api.run(self._responding(request_id, approved, reason))

    async def arespond_to_approval(self, request_id: str, approved: bool, responder: str, reason: str = "") -> bool:
        return await self._api.arun(self._responding(request_id, approved, reason))

    def _responding(self, request_id: str, approved: bool, reason: str) -> Steps[bool]:
        return bool((yield Ask("POST", f"/{request_id}/decide", {"approved": approved, "reason": reason})))

    def get_pending_approvals(self, approval_type: str | None = None) -> list[ApprovalRequest]:
        return self._api.run(self._pending(approval_type))

    async def aget_pending_approvals(self, approval_type: str | None = None) -> list[ApprovalRequest]:
        return await self._api.arun(self._pending(approval_type))

    def _pending(self, approval_type: str | None) -> Steps[list[ApprovalRequest]]:
        found = yield Ask("GET", "", params={"approval_type": approval_type or None}, empty=[])
        return [ApprovalRequest.from_dict(raw) for raw in found]

    def clear_expired_requests(self) -> int:
        """Delete this key's agents' expired requests; how many."""
        return self._api.run(self._clearing())

    async def aclear_expired_requests(self) -> int:
        return await self._api.arun(self._clearing())

    def _clearing(self) -> Steps[int]:
        return int((yield Ask("POST", "/clear-expired", empty={})).get("cleared", 0))
