"""TelemetryClient: local-telemetry's API, delivered without blocking the agent.

Every call builds its record, appends it to the local spool and returns; ids are made here, so
nothing waits for the server. One background thread delivers the spool (see sender.py).
No method raises into the agent: problems are logged and counted in `get_stats()`. Only
`track_run` re-raises, and only the agent's own exception. A disabled client (TELEMETRY_ENABLED=false)
has no spool and no thread: every call returns at once with an empty answer.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import platform
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from telemetry_client import context
from telemetry_client.common import never_raises, now, to_json
from telemetry_client.config import TelemetryConfig, fallback_spool_dir
from telemetry_client.runs import USAGE_FIELDS, Run, RunContext, associating, end_status, new_run_id, run_fields
from telemetry_client.sender import Sender, Stats
from telemetry_client.spool import Spool
from telemetry_client.transport import Ask, Connections, adrive, drive

logger = logging.getLogger("telemetry_client")

ENDED_RUNS_REMEMBERED = 10_000  # for associate_commit after end_run
READ_FLUSH_TIMEOUT = 2.0  # how long a question that reads waits for this client's records to arrive


class TelemetryClient:
    """Records runs and their events; configured by `TelemetryConfig` or the environment
    (TELEMETRY_API_URL, TELEMETRY_API_KEY, TELEMETRY_ENABLED...)."""

    def __init__(
        self,
        config: TelemetryConfig | None = None,
        *,
        api_url: str | None = None,
        api_key: str | None = None,
        spool_dir: str | Path | None = None,
        enabled: bool | None = None,
    ):
        self.stats = Stats()
        self._lock = threading.Lock()
        self._runs: dict[str, Run] = {}
        self._ended: OrderedDict[str, str] = OrderedDict()
        self._host = platform.node()
        # Event ids: unique per client instance (random prefix) and cheap (a counter), not uuid4 per event.
        self._id_prefix = f"{uuid.uuid4().hex[:16]}-"
        self._next_id = itertools.count(1).__next__
        self._closed = False
        self.spool: Spool | None = None
        self.sender: Sender | None = None
        self._connections: Connections | None = None  # for questions, made on the first
        try:
            self.config = config or TelemetryConfig.from_env()
            for name, value in (("api_url", api_url), ("api_key", api_key), ("enabled", enabled)):
                if value is not None:
                    setattr(self.config, name, value)
            if spool_dir is not None:
                self.config.spool_dir = Path(spool_dir)
            problems = self.config.problems() if self.config.enabled else []
        except Exception:
            logger.exception("telemetry: unusable settings: telemetry is off (the agent continues)")
            self.config, problems = TelemetryConfig(enabled=False), []
        self.enabled = bool(self.config.enabled)
        if not self.enabled:
            return
        for problem in problems:
            logger.warning("telemetry: %s", problem)
        self.spool = self._claim_spool()
        self.sender = self._start_sender(self.spool, self.config.api_url) if self.spool and self.config.api_url else None
        atexit.register(self._at_exit)

    def _start_sender(self, spool: Spool, api_url: str) -> Sender | None:
        try:
            orphans = Spool.orphans(spool.path.parent, self.config.spool_max_bytes)
            sender = Sender(
                spool,
                orphans,
                api_url,
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
            logger.exception("telemetry: cannot start delivery; records stay in the spool %s", spool.path)
            return None

    def _claim_spool(self) -> Spool | None:
        for root in (self.config.spool_dir, fallback_spool_dir()):
            try:
                return Spool.claim(Path(root), self.config.spool_max_bytes)
            except Exception as exc:  # noqa: BLE001 - an OSError, a NUL in the path, no locking: never the agent's problem
                logger.warning("telemetry: cannot use the spool dir %s (%s)", root, exc)
        logger.error("telemetry: no usable spool dir: records are dropped (the agent continues)")
        return None

    # --- recording ---------------------------------------------------------------------------
    def _record(self, record: dict[str, Any]) -> bool:
        """Accept a record: once this returns True it is in the spool and will be delivered."""
        if not self.enabled:
            return False
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

    @never_raises(default="")
    def start_run(self, agent_name: str, job_type: str, trigger_type: str = "cli", **kwargs: Any) -> str:
        """Start a run and return its run_id at once (the server learns of it in the background)."""
        run_id = kwargs.pop("run_id", None) or new_run_id(agent_name)
        run = Run(str(uuid.uuid4()))
        with self._lock:
            self._runs[run_id] = run
        if not self.enabled:
            return run_id
        record = {
            "kind": "run",
            "event_id": run.event_id,
            "run_id": run_id,
            "agent_name": agent_name,
            "job_type": job_type,
            "trigger_type": trigger_type,
            "start_time": now(),
            "status": "running",
            "host": self._host,
            "agent_owner": self.config.agent_owner,
            **run_fields(kwargs, "start_run"),
        }
        self._record(record)
        return run_id

    @never_raises()
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
                "timestamp": now(),
                "payload": payload,
            }
        )

    @never_raises()
    def set_metrics(self, run_id: str, **metrics: Any) -> None:
        """Remember run fields (item counts, summaries, metrics_json...) to send when the run ends."""
        run = self._runs.get(run_id)
        if run is None:
            logger.warning("telemetry: set_metrics() for unknown or ended run %r ignored", run_id)
            return
        run.metrics.update(run_fields(metrics, "set_metrics"))

    @never_raises()
    def end_run(self, run_id: str, status: str = "success", **kwargs: Any) -> None:
        with self._lock:
            run = self._runs.pop(run_id, None)
            if run is not None and self.enabled:
                self._ended[run_id] = run.event_id
                while len(self._ended) > ENDED_RUNS_REMEMBERED:
                    self._ended.popitem(last=False)
        if run is None:
            logger.warning("telemetry: end_run() for unknown or ended run %r ignored", run_id)
            return
        if not self.enabled:
            return
        record = {
            "kind": "end",
            "event_id": run.event_id,
            "status": end_status(status),
            "end_time": now(),
            "duration_ms": int((time.monotonic() - run.started) * 1000),
            **run.metrics,
            **run_fields(kwargs, "end_run"),
        }
        self._record(record)

    @contextmanager
    def track_run(self, agent_name: str, job_type: str, trigger_type: str = "cli", **kwargs: Any) -> Iterator[RunContext]:
        """A run around a block: ends `success`, or `failed` with the error if the block raises
        (`cancelled` on KeyboardInterrupt or SystemExit), and re-raises the agent's exception. It
        is the current run inside the block (`telemetry_client.current_run()`)."""
        run_id = self.start_run(agent_name, job_type, trigger_type, **kwargs)
        run = RunContext(run_id, self, agent_name)
        token = context.run_var.set(run)
        try:
            yield run
        except Exception as exc:
            self.end_run(run_id, status="failed", error_summary=f"{type(exc).__name__}: {exc}"[:500])
            raise
        except BaseException as exc:
            self.end_run(run_id, status="cancelled", error_summary=type(exc).__name__)
            raise
        else:
            self.end_run(run_id, status="success")
        finally:
            context.restore(context.run_var, token)

    @never_raises(default=(False, "[ERROR] associate_commit failed; see the log"))
    def associate_commit(
        self,
        run_id: str,
        commit_hash: str,
        commit_source: str,
        commit_author: str | None = None,
        commit_timestamp: str | None = None,
    ) -> tuple[bool, str]:
        """Link a run to a git commit; (accepted, message). A run of this client (running or
        recently ended) is linked in the background; another's is looked up on the server by its
        run_id (the newest run of that id) and linked there, waiting for the answer."""
        return drive(associating(self, run_id, commit_hash, commit_source, commit_author, commit_timestamp), self._ask)

    @never_raises(default=(False, "[ERROR] associate_commit failed; see the log"))
    async def aassociate_commit(
        self,
        run_id: str,
        commit_hash: str,
        commit_source: str,
        commit_author: str | None = None,
        commit_timestamp: str | None = None,
    ) -> tuple[bool, str]:
        """`associate_commit`, awaited."""
        return await adrive(associating(self, run_id, commit_hash, commit_source, commit_author, commit_timestamp), self._aask)

    @never_raises(default="")
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
        if not self.enabled:
            return ""
        unknown = fields.keys() - USAGE_FIELDS
        for name in unknown:
            logger.warning("telemetry: record_llm_usage() ignoring unknown field %r", name)
        record = {
            "kind": "usage",
            "event_id": str(uuid.uuid4()),
            "timestamp": now(),
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

    # --- questions (telemetry_client.api) --------------------------------------------------------
    def _ask(self, step: Ask, prefix: str = "", timeout: float | None = None) -> Any:
        """The JSON answer to `step` (its path under `prefix`), or `step.empty` (logged) when there
        is none. A read (GET) first waits a little for this client's own records to arrive, so that
        it sees them."""
        server = self._server(step, prefix)
        if server is None:
            return step.empty
        if self._reads_own_records(step):
            self.flush(READ_FLUSH_TIMEOUT)
        found = server.ask(step, prefix + step.path, step.timeout or timeout or self.config.request_timeout)
        return found if step.empty is None else found or step.empty

    async def _aask(self, step: Ask, prefix: str = "", timeout: float | None = None) -> Any:
        """`_ask`, awaited in the running event loop (on its own connections)."""
        server = self._server(step, prefix)
        if server is None:
            return step.empty
        if self._reads_own_records(step):
            await asyncio.to_thread(self.flush, READ_FLUSH_TIMEOUT)
        found = await server.aask(step, prefix + step.path, step.timeout or timeout or self.config.request_timeout)
        return found if step.empty is None else found or step.empty

    def _server(self, step: Ask, prefix: str) -> Connections | None:
        """This client's connections to its server; None (logged) when disabled or without one."""
        if not self.enabled:
            return None
        if not self.config.api_url:
            logger.warning("telemetry: TELEMETRY_API_URL is not set; %s %s not sent", step.method, prefix + step.path)
            return None
        if self._connections is None:
            headers = {"Authorization": f"Api-Key {self.config.api_key}"} if self.config.api_key else {}
            with self._lock:
                self._connections = self._connections or Connections(self.config.api_url, headers)
        return self._connections

    def _reads_own_records(self, step: Ask) -> bool:
        sender, spool = self.sender, self.spool
        return step.method == "GET" and sender is not None and spool is not None and not sender.failing and spool.pending()

    # --- delivery ---------------------------------------------------------------------------------
    @never_raises(default=False)
    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything accepted so far is delivered; False when `timeout` passed first."""
        if self.spool is None:
            return True
        if self.sender is None:
            return not self.spool.pending()
        return self.sender.wait_delivered(self.spool, (self.spool.write_segment, self.spool.write_offset), timeout)

    @never_raises()
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
        if self._connections is not None:
            self._connections.close()

    @never_raises(default=False)
    async def aflush(self, timeout: float = 10.0) -> bool:
        """`flush`, awaited (the wait runs in a thread of the loop's executor)."""
        return await asyncio.to_thread(self.flush, timeout)

    @never_raises()
    async def aclose(self, timeout: float = 10.0) -> None:
        """`close`, awaited; it also closes the running event loop's connections (which asyncio.run
        would close at its end)."""
        if self._connections is not None:
            await self._connections.aclose()
        await asyncio.to_thread(self.close, timeout)

    def _at_exit(self) -> None:
        self.close(self.config.exit_flush_timeout)

    def get_stats(self) -> dict[str, Any]:
        stats = self.stats.as_dict()
        stats["pending_bytes"] = self.spool.size if self.spool else 0
        stats["active_runs"] = len(self._runs)
        return stats

    def __enter__(self) -> TelemetryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
