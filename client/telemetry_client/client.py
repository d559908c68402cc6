"""TelemetryClient: local-telemetry's API, delivered without blocking the agent.

Every call builds its record, appends it to the local spool and returns; ids are made here, so
nothing waits for the server. One background thread delivers the spool (see sender.py).
No method raises into the agent: problems are logged and counted in `get_stats()`. Only
`track_run` re-raises, and only the agent's own exception.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import json
import logging
import os
import platform
import re
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from telemetry_client.config import TelemetryConfig
from telemetry_client.sender import Sender, Stats
from telemetry_client.spool import Spool

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
ENDED_RUNS_REMEMBERED = 10_000  # for associate_commit after end_run


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _never_raises(default: Any = None):
    """Telemetry must not break the agent: log what goes wrong and return `default`."""

    def decorate(method):
        @functools.wraps(method)
        def safe(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except Exception:
                logger.exception("telemetry: %s failed (the agent continues)", method.__name__)
                return default

        return safe

    return decorate


def to_json(value: Any) -> bytes:
    """A record or a request body: compact, and what JSON lacks (a datetime, a Path) as a string."""
    return json.dumps(value, separators=(",", ":"), default=str).encode()


class _Run:
    __slots__ = ("event_id", "metrics", "started")

    def __init__(self, event_id: str):
        self.event_id = event_id
        self.started = time.monotonic()
        self.metrics: dict[str, Any] = {}


class RunContext:
    """What `track_run` yields: the run's id and the calls that act on it."""

    def __init__(self, run_id: str, client: TelemetryClient):
        self.run_id = run_id
        self._client = client

    def log_event(self, event_type: str, payload: dict[str, Any] | None = None) -> None:
        self._client.log_event(self.run_id, event_type, payload)

    def set_metrics(self, **metrics: Any) -> None:
        self._client.set_metrics(self.run_id, **metrics)

    def associate_commit(
        self, commit_hash: str, commit_source: str, commit_author: str | None = None, commit_timestamp: str | None = None
    ) -> tuple[bool, str]:
        return self._client.associate_commit(self.run_id, commit_hash, commit_source, commit_author, commit_timestamp)


class TelemetryClient:
    """Records runs and their events; configured by `TelemetryConfig` or TELEMETRY_API_URL/_KEY."""

    def __init__(
        self,
        config: TelemetryConfig | None = None,
        *,
        api_url: str | None = None,
        api_key: str | None = None,
        spool_dir: str | Path | None = None,
    ):
        self.config = config or TelemetryConfig.from_env()
        if api_url is not None:
            self.config.api_url = api_url
        if api_key is not None:
            self.config.api_key = api_key
        if spool_dir is not None:
            self.config.spool_dir = Path(spool_dir)
        for problem in self.config.problems():
            logger.warning("telemetry: %s", problem)
        self.stats = Stats()
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = {}
        self._ended: OrderedDict[str, str] = OrderedDict()
        self._host = platform.node()
        # Event ids: unique per client instance (random prefix) and cheap (a counter), not uuid4 per event.
        self._id_prefix = f"{uuid.uuid4().hex[:16]}-"
        self._next_id = itertools.count(1).__next__
        self._closed = False
        self.spool = self._claim_spool()
        self.sender = self._start_sender() if self.spool and self.config.api_url else None
        atexit.register(self._at_exit)

    def _start_sender(self) -> Sender | None:
        try:
            orphans = Spool.orphans(self.spool.path.parent, self.config.spool_max_bytes)
            sender = Sender(
                self.spool,
                orphans,
                self.config.api_url,
                self.config.api_key,
                self.config.batch_size,
                self.config.flush_interval,
                self.config.fsync_interval,
                self.config.request_timeout,
                self.stats,
            )
            sender.start()
            return sender
        except Exception:
            logger.exception("telemetry: cannot start delivery; records stay in the spool %s", self.spool.path)
            return None

    def _claim_spool(self) -> Spool | None:
        for root in (self.config.spool_dir, Path(tempfile.gettempdir()) / f"telemetry-client-{os.getuid()}"):
            try:
                return Spool.claim(Path(root), self.config.spool_max_bytes)
            except OSError as exc:
                logger.warning("telemetry: cannot use the spool dir %s (%s)", root, exc)
        logger.error("telemetry: no usable spool dir: records are dropped (the agent continues)")
        return None

    # --- recording ---------------------------------------------------------------------------
    def _record(self, record: dict[str, Any]) -> bool:
        """Accept a record: once this returns True it is in the spool and will be delivered."""
        if self.spool is None or self._closed:
            self.stats.dropped += 1
            return False
        line = to_json(record) + b"\n"
        if not self.spool.append(line):
            self.stats.dropped += 1
            if self.stats.dropped == 1 or self.stats.dropped % 1000 == 0:
                logger.error(
                    "telemetry: the spool is full (%d bytes): %d records dropped so far",
                    self.config.spool_max_bytes,
                    self.stats.dropped,
                )
            return False
        self.stats.accepted += 1
        if self.sender and self.stats.accepted % self.config.batch_size == 0:
            self.sender.wake.set()
        return True

    def _fields(self, given: dict[str, Any], call: str) -> dict[str, Any]:
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

    @_never_raises(default="")
    def start_run(self, agent_name: str, job_type: str, trigger_type: str = "cli", **kwargs: Any) -> str:
        """Start a run and return its run_id at once (the server learns of it in the background)."""
        run_id = kwargs.pop("run_id", None) or f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{agent_name}-{uuid.uuid4().hex[:8]}"
        run = _Run(str(uuid.uuid4()))
        record = {
            "kind": "run",
            "event_id": run.event_id,
            "run_id": run_id,
            "agent_name": agent_name,
            "job_type": job_type,
            "trigger_type": trigger_type,
            "start_time": _now(),
            "status": "running",
            "host": self._host,
            "agent_owner": self.config.agent_owner,
            **self._fields(kwargs, "start_run"),
        }
        with self._lock:
            self._runs[run_id] = run
        self._record(record)
        return run_id

    @_never_raises()
    def log_event(self, run_id: str, event_type: str, payload: dict[str, Any] | None = None) -> None:
        run = self._runs.get(run_id)
        if run is None:
            logger.warning("telemetry: log_event() for unknown or ended run %r ignored", run_id)
            return
        self._record(
            {
                "kind": "event",
                "event_id": f"{self._id_prefix}{self._next_id():x}",
                "run_event_id": run.event_id,
                "event_type": event_type,
                "timestamp": _now(),
                "payload": payload,
            }
        )

    @_never_raises()
    def set_metrics(self, run_id: str, **metrics: Any) -> None:
        """Remember run fields (item counts, summaries, metrics_json...) to send when the run ends."""
        run = self._runs.get(run_id)
        if run is None:
            logger.warning("telemetry: set_metrics() for unknown or ended run %r ignored", run_id)
            return
        run.metrics.update(self._fields(metrics, "set_metrics"))

    @_never_raises()
    def end_run(self, run_id: str, status: str = "success", **kwargs: Any) -> None:
        with self._lock:
            run = self._runs.pop(run_id, None)
            if run is not None:
                self._ended[run_id] = run.event_id
                while len(self._ended) > ENDED_RUNS_REMEMBERED:
                    self._ended.popitem(last=False)
        if run is None:
            logger.warning("telemetry: end_run() for unknown or ended run %r ignored", run_id)
            return
        status = STATUS_ALIASES.get(status, status)
        if status not in STATUSES:
            logger.warning("telemetry: end_run() status %r is not one of %s; recorded as 'failed'", status, sorted(STATUSES))
            status = "failed"
        record = {
            "kind": "end",
            "event_id": run.event_id,
            "status": status,
            "end_time": _now(),
            "duration_ms": int((time.monotonic() - run.started) * 1000),
            **run.metrics,
            **self._fields(kwargs, "end_run"),
        }
        self._record(record)

    @contextmanager
    def track_run(self, agent_name: str, job_type: str, trigger_type: str = "cli", **kwargs: Any):
        """A run around a block: ends `success`, or `failed` with the error if the block raises
        (`cancelled` on KeyboardInterrupt or SystemExit), and re-raises the agent's exception."""
        run_id = self.start_run(agent_name, job_type, trigger_type, **kwargs)
        try:
            yield RunContext(run_id, self)
        except Exception as exc:
            self.end_run(run_id, status="failed", error_summary=f"{type(exc).__name__}: {exc}"[:500])
            raise
        except BaseException as exc:
            self.end_run(run_id, status="cancelled", error_summary=type(exc).__name__)
            raise
        else:
            self.end_run(run_id, status="success")

    @_never_raises(default=(False, "[ERROR] associate_commit failed; see the log"))
    def associate_commit(
        self,
        run_id: str,
        commit_hash: str,
        commit_source: str,
        commit_author: str | None = None,
        commit_timestamp: str | None = None,
    ) -> tuple[bool, str]:
        """Link a run (running or recently ended) to a git commit; (accepted, message)."""
        run = self._runs.get(run_id)
        event_id = run.event_id if run else self._ended.get(run_id)
        if event_id is None:
            return False, f"[ERROR] Run ID not found: {run_id}"
        if not isinstance(commit_hash, str) or not COMMIT_HASH.match(commit_hash):
            return False, f"[ERROR] Validation failed: commit_hash must be 7-40 hex characters, got {commit_hash!r}"
        if commit_source not in COMMIT_SOURCES:
            return False, f"[ERROR] Validation failed: commit_source must be one of {COMMIT_SOURCES}, got {commit_source!r}"
        record = {"kind": "commit", "event_id": event_id, "commit_hash": commit_hash, "commit_source": commit_source}
        if commit_author:
            record["commit_author"] = commit_author
        if commit_timestamp:
            record["commit_timestamp"] = commit_timestamp
        if not self._record(record):
            return False, "[ERROR] The telemetry spool is full or closed; the commit was not recorded"
        return True, f"Commit {commit_hash} recorded for run {run_id} (delivered in the background)"

    @_never_raises(default="")
    def record_llm_usage(
        self,
        agent_name: str,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        run_id: str | None = None,
        **fields: Any,
    ) -> str:
        """Record one model call; returns its id at once. `fields`: workflow, stage, task_type,
        provider, tier (cheap/capable/premium), cache_read_tokens, cache_write_tokens, cost (else
        the server prices it from its table), latency_ms, success, fallback. `run_id` links it to
        a run of this client."""
        unknown = fields.keys() - USAGE_FIELDS
        for name in unknown:
            logger.warning("telemetry: record_llm_usage() ignoring unknown field %r", name)
        record = {
            "kind": "usage",
            "event_id": str(uuid.uuid4()),
            "timestamp": _now(),
            "agent_name": agent_name,
            "model": model,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            **{name: value for name, value in fields.items() if name not in unknown},
        }
        if event_id := self._run_event_id(run_id, "record_llm_usage"):
            record["run_event_id"] = event_id
        return record["event_id"] if self._record(record) else ""

    def _run_event_id(self, run_id: str | None, call: str) -> str | None:
        """The event_id of this client's run `run_id` (running or ended lately), for records that
        name their run."""
        if not run_id:
            return None
        run = self._runs.get(run_id)
        event_id = run.event_id if run else self._ended.get(run_id)
        if event_id is None:
            logger.warning("telemetry: %s() for unknown run %r: recorded without its run", call, run_id)
        return event_id

    # --- delivery ---------------------------------------------------------------------------------
    @_never_raises(default=False)
    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything accepted so far is delivered; False when `timeout` passed first."""
        if self.spool is None:
            return True
        if self.sender is None:
            return not self.spool.pending()
        return self.sender.wait_delivered(self.spool, (self.spool.write_segment, self.spool.write_offset), timeout)

    @_never_raises()
    def close(self, timeout: float = 10.0) -> None:
        """Deliver what can be delivered within `timeout`, then stop. What is left stays in the
        spool and is sent by the next client that uses this spool dir."""
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        if self.sender:
            self.sender.stop(timeout=5.0)
        if self.spool:
            self.spool.release()

    def _at_exit(self) -> None:
        self.close(self.config.exit_flush_timeout)

    def get_stats(self) -> dict[str, Any]:
        stats = self.stats.as_dict()
        stats["pending_bytes"] = self.spool.size if self.spool else 0
        stats["active_runs"] = len(self._runs)
        return stats

    def __enter__(self) -> TelemetryClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
