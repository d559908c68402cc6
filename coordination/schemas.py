"""The shapes the coordination API accepts."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

Name = Field(default=None, max_length=200)


class StartIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metadata: dict[str, Any] = Field(default_factory=dict)
    display_name: str | None = Name
    stale_after_seconds: float | None = Field(default=None, ge=1, le=86_400, description="This agent's own threshold")


class BeatIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str = Field(default="running", min_length=1, max_length=50)
    progress: float = Field(default=0.0, ge=0, le=100, description="A fraction (0-1) or a percentage (over 1)")
    current_task: str = Field(default="", max_length=500)


class StopIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    final_status: str = Field(default="completed", min_length=1, max_length=50)


SignalType = Field(pattern=r"^[A-Za-z0-9_.:-]{1,100}$", description="Letters, digits and _ . : -")


class SignalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    signal_type: str = SignalType
    source_agent: str | None = Field(default=None, max_length=200, description="Default: the key's agent")
    target_agent: str | None = Field(default=None, max_length=200, description="None: broadcast to every agent")
    payload: dict[str, Any] = Field(default_factory=dict)
    ttl_seconds: int | None = Field(default=None, ge=1, le=86_400, description="Default: SIGNAL_DEFAULT_TTL (60)")


class ReceiveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent_id: str | None = Field(default=None, max_length=200, description="The receiver; default: the key's agent")
    signal_type: str = Field(default="", max_length=100, description="Empty: any type")
    source_agent: str = Field(default="", max_length=200, description="Empty: from anyone")
    consume: bool = Field(default=True, description="False: only look (peek)")
    timeout: float = Field(default=0.0, ge=0, description="Seconds to wait for one; 0: answer at once")
