"""Which of the server's optional features work now (TelemetryFeatures), as the
server finds them by trying each (GET /api/v1/reports/features)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from telemetry_client.api import ServerApi
from telemetry_client.client import TelemetryClient
from telemetry_client.common import never_raises
from telemetry_client.transport import Ask, Steps


class FeatureStatus(str, enum.Enum):
    AVAILABLE = "available"
    DEGRADED = "degraded"
    UNAVAILABLE = "unavailable"


@dataclass
class FeatureInfo:
    name: str
    status: FeatureStatus
    description: str = ""
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status.value, "description": self.description, "detail": self.detail}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureInfo:
        return cls(data["name"], FeatureStatus(data["status"]), data.get("description", ""), data.get("detail", ""))


class TelemetryFeatures:
    """The server of `memory` (a TelemetryClient; None: the process's client)."""

    def __init__(self, memory: TelemetryClient | None = None):
        self._api = ServerApi(memory, "/api/v1/reports")

    @never_raises(default=[])
    def check_all(self) -> list[FeatureInfo]:
        """Every feature with its status; without an answer, one: the server, unavailable."""
        return self._api.run(self._checking())

    @never_raises(default=[])
    async def acheck_all(self) -> list[FeatureInfo]:
        return await self._api.arun(self._checking())

    def _checking(self) -> Steps[list[FeatureInfo]]:
        found = yield Ask("GET", "/features")
        if not found:
            return [FeatureInfo("server", FeatureStatus.UNAVAILABLE, "the telemetry server", "no answer (see the log)")]
        return [
            FeatureInfo(row["feature"], FeatureStatus(row["status"]), row.get("what it serves", ""), row.get("detail", ""))
            for row in found["rows"]
        ]

    def get_status(self, name: str) -> FeatureStatus:
        """A feature's status (unavailable when the server does not know it or cannot be asked)."""
        return _status(self.check_all(), name)

    async def aget_status(self, name: str) -> FeatureStatus:
        return _status(await self.acheck_all(), name)

    def is_available(self, name: str) -> bool:
        return self.get_status(name) is FeatureStatus.AVAILABLE

    async def ais_available(self, name: str) -> bool:
        return await self.aget_status(name) is FeatureStatus.AVAILABLE


def _status(features: list[FeatureInfo], name: str) -> FeatureStatus:
    return next((feature.status for feature in features if feature.name == name), FeatureStatus.UNAVAILABLE)
