"""What the client knows about runs: the fields the server takes, the statuses and commit sources,
and RunContext, what `track_run` yields."""

from __future__ import annotations

import logging
import re
import time
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from telemetry_client.transport import Ask, Steps

if TYPE_CHECKING:
    from telemetry_client.client import TelemetryClient

logger = logging.getLogger("telemetry_client")

# The run fields the server knows besides the identity ones the client fills in itself.
RUN_FIELDS = frozenset({
    "end_time", "status", "duration_ms", "items_discovered", "items_succeeded", "items_failed", "items_skipped",
    "parent_run_id", "agent_owner", "trigger_type", "input_summary", "output_summary", "error_summary",
    "error_details", "source_ref", "target_ref", "metrics_json", "context_json", "insight_id", "product",
    "product_family", "platform", "subdomain", "website", "website_section", "item_name", "git_repo", "git_branch",
    "git_run_tag", "git_commit_hash", "git_commit_source", "git_commit_author", "git_commit_timestamp", "host",
    "environment",
})  # fmt: skip
USAGE_FIELDS = frozenset({
    "workflow", "stage", "task_type", "provider", "tier", "cache_read_tokens", "cache_write_tokens", "cost",
    "latency_ms", "success", "fallback",
})  # fmt: skip
COUNTS = frozenset({"duration_ms", "items_discovered", "items_succeeded", "items_failed", "items_skipped"})
STATUSES = frozenset({"running", "success", "failed", "partial", "timeout", "cancelled"})
STATUS_ALIASES = {"failure": "failed", "completed": "success", "succeeded": "success", "canceled": "cancelled"}
COMMIT_SOURCES = ("manual", "llm", "ci")
COMMIT_HASH = re.compile(r"^[0-9a-fA-F]{7,40}$")


LOOKUP_TIMEOUT = 5.0  # associate_commit asking the server about a run started elsewhere


def new_run_id(agent_name: str) -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{agent_name}-{uuid.uuid4().hex[:8]}"


def run_fields(given: dict[str, Any], call: str) -> dict[str, Any]:
    """The known, plausible run fields of `given`; the rest are logged and left out."""
    fields = {}
    for name, value in given.items():
        if name not in RUN_FIELDS:
            logger.warning("telemetry: %s() ignoring unknown field %r", call, name)
        elif name in COUNTS and value is not None and (not isinstance(value, int) or value < 0):
            logger.warning("telemetry: %s() ignoring %s=%r (must be an integer >= 0)", call, name, value)
        else:
            fields[name] = value
    return fields


def end_status(status: str) -> str:
    status = STATUS_ALIASES.get(status, status)
    if status not in STATUSES:
        logger.warning("telemetry: end_run() status %r is not one of %s; recorded as 'failed'", status, sorted(STATUSES))
        return "failed"
    return status


def commit_problem(commit_hash: Any, commit_source: Any) -> str | None:
    """Why the server would refuse this commit, as local-telemetry words it; None when it would not."""
    if not isinstance(commit_hash, str) or not COMMIT_HASH.match(commit_hash):
        return f"[ERROR] Validation failed: commit_hash must be 7-40 hex characters, got {commit_hash!r}"
    if commit_source not in COMMIT_SOURCES:
        return f"[ERROR] Validation failed: commit_source must be one of {COMMIT_SOURCES}, got {commit_source!r}"
    return None


def associating(
    client: TelemetryClient,
    run_id: str,
    commit_hash: str,
    commit_source: str,
    commit_author: str | None,
    commit_timestamp: str | None,
) -> Steps[tuple[bool, str]]:
    """associate_commit's steps: a run of `client` is linked in the background, another's on the server."""
    if not client.enabled:
        return False, "[ERROR] Telemetry is disabled (TELEMETRY_ENABLED=false): the commit was not recorded"
    problem = commit_problem(commit_hash, commit_source)
    if problem:
        return False, problem
    commit = {"commit_hash": commit_hash, "commit_source": commit_source}
    if commit_author:
        commit["commit_author"] = commit_author
    if commit_timestamp:
        commit["commit_timestamp"] = commit_timestamp
    run = client._runs.get(run_id)
    event_id = run.event_id if run else client._ended.get(run_id)
    if event_id is None and not client.config.api_url:
        return False, f"[ERROR] Run ID not found: {run_id}"
    if event_id is None:  # a run another process started: found on the server, linked there
        found = yield Ask("GET", "/api/v1/runs", params={"run_id": run_id, "limit": 1}, timeout=LOOKUP_TIMEOUT)
        if not found:
            unasked = " (the server could not be asked; see the log)" if found is None else ""
            return False, f"[ERROR] Run ID not found: {run_id}{unasked}"
        linked = yield Ask("POST", f"/api/v1/runs/{found[0]['event_id']}/associate-commit", commit, timeout=LOOKUP_TIMEOUT)
        if linked is None:
            return False, f"[ERROR] The server did not link commit {commit_hash} to run {run_id}; see the log"
        return True, f"Commit {commit_hash} associated with run {run_id}"
    if not client._record({"kind": "commit", "event_id": event_id, **commit}):
        return False, "[ERROR] The telemetry spool is full or closed; the commit was not recorded"
    return True, f"Commit {commit_hash} recorded for run {run_id} (delivered in the background)"


class Run:
    """A run this client started: the server's id for it, and the fields to send when it ends."""

    __slots__ = ("event_id", "metrics", "started")

    def __init__(self, event_id: str):
        self.event_id = event_id
        self.started = time.monotonic()
        self.metrics: dict[str, Any] = {}


class RunContext:
    """What `track_run` yields: the run's id and the calls that act on it."""

    def __init__(self, run_id: str, client: TelemetryClient, agent_name: str = ""):
        self.run_id = run_id
        self.agent_name = agent_name
        self._client = client

    def log_event(self, event_type: str, payload: dict[str, Any] | None = None) -> None:
        self._client.log_event(self.run_id, event_type, payload)

    def set_metrics(self, **metrics: Any) -> None:
        self._client.set_metrics(self.run_id, **metrics)

    def associate_commit(
        self, commit_hash: str, commit_source: str, commit_author: str | None = None, commit_timestamp: str | None = None
    ) -> tuple[bool, str]:
        return self._client.associate_commit(self.run_id, commit_hash, commit_source, commit_author, commit_timestamp)

    async def aassociate_commit(
        self, commit_hash: str, commit_source: str, commit_author: str | None = None, commit_timestamp: str | None = None
    ) -> tuple[bool, str]:
        return await self._client.aassociate_commit(self.run_id, commit_hash, commit_source, commit_author, commit_timestamp)
