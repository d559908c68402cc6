"""Human approval gates: ApprovalGate, ApprovalRequest and ApprovalResponse, over the
server's approvals API. A person decides in the server's admin; the agent blocks until then.

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
        body = {"approval_type": approval_type, "agent_id": self.agent_id, "context": context or {}, "timeout_seconds": timeout}
        created = self._api.answer("POST", "", body=body)
        if not created:
            reason = "Not approved: the telemetry server could not be asked."
            if not self._api.enabled:
                reason = "Not approved: telemetry is disabled (TELEMETRY_ENABLED=false)."
            return ApprovalResponse("", approved=False, responder="", reason=reason)
        request_id = created["request_id"]
        deadline = time.monotonic() + float(created["timeout_seconds"]) + QUICK_TIMEOUT
        while True:
            step = min(max(deadline - time.monotonic(), 0.0), WAIT_STEP)
            found = self._api.answer("POST", f"/{request_id}/wait", timeout=step + QUICK_TIMEOUT, body={"timeout": step})
            if found and found.get("decision"):
                return ApprovalResponse.from_dict(found["decision"])
            if time.monotonic() >= deadline:
                reason = "Not approved: no decision could be learned before the timeout."
                return ApprovalResponse(request_id, approved=False, responder="", reason=reason)
            if found is None:
                time.sleep(RETRY_PAUSE)

    def respond_to_approval(self, request_id: str, approved: bool, responder: str, reason: str = "") -> bool:
        """Decide a request. Only people with the approve permission may (in the admin, or the API
        with their session): with an agent key the server refuses, and this returns False."""
        found = self._api.answer("POST", f"/{request_id}/decide", body={"approved": approved, "reason": reason})
        return bool(found)

    def get_pending_approvals(self, approval_type: str | None = None) -> list[ApprovalRequest]:
        params = {"approval_type": approval_type} if approval_type else {}
        return [ApprovalRequest.from_dict(raw) for raw in self._api.call("GET", "", [], params=params)]

    def clear_expired_requests(self) -> int:
        """Delete this key's agents' expired requests; how many."""
        return int(self._api.call("POST", "/clear-expired", {}).get("cleared", 0))
