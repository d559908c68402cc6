"""Local, privacy-first trackers (UsageTracker and HelpTracker): append-only JSONL files
on the agent's machine, readable without a server, and sent to it through the client.

Privacy: user ids are stored only as a salted SHA-256 (the salt lives next to the files, so the
same user hashes alike here and nowhere else); no prompt or response text is ever stored, only
counts, names and outcomes. Like the rest of the SDK, nothing here raises into the agent: a folder
that cannot be used is logged once, and the tracker keeps nothing locally (the server part goes on).
With telemetry disabled nothing is written at all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from telemetry_client.client import TelemetryClient
from telemetry_client.common import never_raises, now
from telemetry_client.feedback import FeedbackLoop
from telemetry_client.process import UsesClient

logger = logging.getLogger("telemetry_client")

USAGE_FILE = "usage.jsonl"
HELP_FILE = "help_queries.jsonl"  # the help system's own file name, so both read one file


class _JsonLines:
    """An append-only JSON-lines file; each record is one write, so concurrent writers do not interleave."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(descriptor, line)
            finally:
                os.close(descriptor)

    def records(self, since: datetime | None = None) -> list[dict[str, Any]]:
        """Every record (from `since` on); lines that do not parse are skipped."""
        if not self.path.exists():
            return []
        found = []
        with self.path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if since is None or datetime.fromisoformat(record.get("timestamp", "1970-01-01T00:00:00+00:00")) >= since:
                    found.append(record)
        return found

    def clear(self) -> int:
        count = len(self.records())
        self.path.unlink(missing_ok=True)
        return count


class _LocalTracker(UsesClient):
    """A tracker's file `name` in `directory` (default: `local` in the client's spool dir) and the
    salt of its user ids."""

    def __init__(self, directory: str | os.PathLike[str] | None, memory: TelemetryClient | None, name: str):
        super().__init__(memory)
        self.directory = Path(directory) if directory else self.memory.config.spool_dir / "local"
        self.file = _JsonLines(self.directory / name)
        self._salt = ""
        self.usable = self.memory.enabled and self._make_salt()

    def _make_salt(self) -> bool:
        try:
            salt_file = self.directory / ".salt"
            if not salt_file.exists():
                self.directory.mkdir(parents=True, exist_ok=True)
                salt_file.write_text(secrets.token_hex(16))
                salt_file.chmod(0o600)
            self._salt = salt_file.read_text().strip()
            return True
        except (OSError, ValueError) as exc:  # ValueError: a path the system cannot take (a NUL)
            logger.warning(
                "telemetry: cannot use the folder %s (%s): %s is not kept locally", self.directory, exc, self.file.path.name
            )
            return False

    def _hash(self, user_id: str | None) -> str | None:
        return hashlib.sha256(f"{self._salt}:{user_id}".encode()).hexdigest()[:16] if user_id else None

    def _keep(self, record: dict[str, Any]) -> bool:
        """Append `record` to the file; False when the folder is unusable or telemetry disabled."""
        if not self.usable:
            return False
        try:
            self.file.append(record)
        except (OSError, ValueError) as exc:
            logger.warning("telemetry: cannot write %s (%s); the record is not kept locally", self.file.path, exc)
            return False
        return True


class UsageTracker(_LocalTracker):
    """Model calls recorded to `usage.jsonl` in `directory` (default: `local` in the client's spool
    dir), and sent to the server as `agent_name`'s usage by `memory` (None: the process's client)."""

    def __init__(
        self, directory: str | os.PathLike[str] | None = None, memory: TelemetryClient | None = None, agent_name: str = "local"
    ):
        super().__init__(directory, memory, USAGE_FILE)
        self.agent_name = agent_name

    @never_raises(default=False)
    def track_llm_call(
        self,
        workflow: str,
        stage: str,
        tier: str,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost: float | None = None,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        duration_ms: int = 0,
        success: bool = True,
        user_id: str | None = None,
    ) -> bool:
        """Record one call (counts only: no prompt, no response); whether it was kept locally."""
        record = {
            "timestamp": now(),
            "workflow": workflow,
            "stage": stage,
            "tier": str(getattr(tier, "value", tier)),
            "model": model,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_read_tokens": cache_read_tokens,
            "cache_write_tokens": cache_write_tokens,
            "cost": cost,
            "duration_ms": duration_ms,
            "success": success,
            "user": self._hash(user_id),
        }
        kept = self._keep(record)
        fields: dict[str, Any] = {
            name: record[name] for name in ("workflow", "stage", "tier", "cache_read_tokens", "cache_write_tokens", "success")
        }
        if cost is not None:
            fields["cost"] = cost
        self.memory.record_llm_usage(self.agent_name, model, input_tokens, output_tokens, latency_ms=duration_ms, **fields)
        return kept

    @never_raises(default=[])
    def get_recent_entries(self, limit: int = 20, days: float | None = None) -> list[dict[str, Any]]:
        since = datetime.now(timezone.utc) - timedelta(days=days) if days is not None else None
        return self.file.records(since)[-limit:]

    @never_raises(default={})
    def get_stats(self, days: float = 30) -> dict[str, Any]:
        """Calls, tokens and cost of the last `days`, in all and per tier."""
        records = self.file.records(datetime.now(timezone.utc) - timedelta(days=days))
        by_tier: dict[str, dict[str, Any]] = {}
        for record in records:
            tier = by_tier.setdefault(record["tier"], {"calls": 0, "tokens": 0, "cost": 0.0})
            tier["calls"] += 1
            tier["tokens"] += record["input_tokens"] + record["output_tokens"]
            tier["cost"] += record["cost"] or 0.0
        return {
            "days": days,
            "calls": len(records),
            "tokens": sum(tier["tokens"] for tier in by_tier.values()),
            "cost": sum(tier["cost"] for tier in by_tier.values()),
            "success_rate": sum(1 for r in records if r["success"]) / len(records) if records else None,
            "by_tier": by_tier,
        }

    @never_raises(default=0)
    def reset(self) -> int:
        """Delete the local file; how many records it held."""
        return self.file.clear()


class HelpTracker(_LocalTracker):
    """Help-system queries and template ratings in `help_queries.jsonl` (the help system's file) in
    `directory`; template ratings also go to the server's FeedbackLoop through `memory` (None: the
    process's client)."""

    def __init__(self, directory: str | os.PathLike[str] | None = None, memory: TelemetryClient | None = None):
        super().__init__(directory, memory, HELP_FILE)

    @never_raises(default=False)
    def track_query(self, query: str, template_id: str | None = None, found: bool = True, user_id: str | None = None) -> bool:
        """A help query (its topic, as the user typed it) and the template that answered it; whether
        it was kept."""
        return self._keep(
            {
                "timestamp": now(),
                "kind": "query",
                "query": query,
                "template_id": template_id,
                "found": found,
                "user": self._hash(user_id),
            }
        )

    @never_raises(default=False)
    def record_feedback(self, template_id: str, good: bool, user_id: str | None = None) -> bool:
        """Rate a template good or bad; whether the rating was kept locally."""
        kept = self._keep(
            {"timestamp": now(), "kind": "feedback", "template_id": template_id, "good": bool(good), "user": self._hash(user_id)}
        )
        FeedbackLoop(self._memory).record_template_feedback(template_id, good)
        return kept

    @never_raises(default=0.5)
    def get_template_confidence(self, template_id: str) -> float:
        """good / (good + bad) of this machine's ratings of the template; 0.5 before any."""
        ratings = [r["good"] for r in self.file.records() if r.get("kind") == "feedback" and r.get("template_id") == template_id]
        return sum(ratings) / len(ratings) if ratings else 0.5

    @never_raises(default={})
    def get_stats(self, days: float = 30) -> dict[str, Any]:
        """Queries of the last `days`: how many, how many found an answer, the top templates."""
        records = [r for r in self.file.records(datetime.now(timezone.utc) - timedelta(days=days)) if r.get("kind") == "query"]
        templates: dict[str, int] = {}
        for record in records:
            if record.get("template_id"):
                templates[record["template_id"]] = templates.get(record["template_id"], 0) + 1
        top = sorted(templates.items(), key=lambda item: -item[1])[:10]
        return {
            "days": days,
            "queries": len(records),
            "answered": sum(1 for r in records if r.get("found")),
            "top_templates": top,
        }
