"""The SDK of the agent telemetry and coordination server.

import telemetry_client

client = telemetry_client.get_client()  # the process's one client: TELEMETRY_API_URL, TELEMETRY_API_KEY...
with client.track_run("my_agent", "process_files") as ctx:
    ctx.log_event("start", {"input": "data.csv"})
    ctx.set_metrics(items_discovered=10, items_succeeded=10)
"""

from telemetry_client.approvals import ApprovalGate, ApprovalRequest, ApprovalResponse
from telemetry_client.client import TelemetryClient
from telemetry_client.config import TelemetryConfig
from telemetry_client.context import current_run, current_span
from telemetry_client.coordination import AgentHeartbeat, CoordinationSignal, CoordinationSignals, HeartbeatCoordinator
from telemetry_client.decorators import log_event, set_metrics, traced, track_run
from telemetry_client.features import FeatureInfo, FeatureStatus, TelemetryFeatures
from telemetry_client.feedback import FeedbackEntry, FeedbackLoop, ModelTier, QualityStats, TierRecommendation
from telemetry_client.metrics import MetricsRecorder
from telemetry_client.process import get_client, init
from telemetry_client.runs import RunContext
from telemetry_client.streams import EventStreamer, StreamEvent
from telemetry_client.tracing import Span, SpanContext, SpanKind, SpanStatusCode, Tracer
from telemetry_client.trackers import HelpTracker, UsageTracker

__version__ = "0.1.0"
__all__ = [
    "AgentHeartbeat",
    "ApprovalGate",
    "ApprovalRequest",
    "ApprovalResponse",
    "CoordinationSignal",
    "CoordinationSignals",
    "EventStreamer",
    "FeatureInfo",
    "FeatureStatus",
    "FeedbackEntry",
    "FeedbackLoop",
    "HeartbeatCoordinator",
    "HelpTracker",
    "MetricsRecorder",
    "ModelTier",
    "QualityStats",
    "RunContext",
    "Span",
    "SpanContext",
    "SpanKind",
    "SpanStatusCode",
    "StreamEvent",
    "TelemetryClient",
    "TelemetryConfig",
    "TelemetryFeatures",
    "TierRecommendation",
    "Tracer",
    "UsageTracker",
    "current_run",
    "current_span",
    "get_client",
    "init",
    "log_event",
    "set_metrics",
    "traced",
    "track_run",
]
