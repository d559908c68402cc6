"""The shapes the approvals API accepts."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ApprovalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    approval_type: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,100}$", description="Letters, digits and _ . : -")
    agent_id: str | None = Field(default=None, max_length=200, description="Default: the key's agent")
    context: dict[str, Any] = Field(default_factory=dict, description="What the reviewer needs to decide")
    timeout_seconds: float | None = Field(default=None, gt=0, le=30 * 86_400, description="Default: APPROVAL_DEFAULT_TIMEOUT")


class WaitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout: float = Field(default=30.0, ge=0, description="Seconds to wait for the decision (at most LONG_WAIT_MAX_SECONDS)")


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    approved: bool
    reason: str = Field(default="", max_length=5000)
