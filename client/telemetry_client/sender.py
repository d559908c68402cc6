"""The one background thread that delivers the spool to the server.

It batches by size and time, sends to ``POST /api/v1/ingest``, retries server and network
failures with exponential backoff and full jitter, honours ``Retry-After`` on 429 and 503, and
never retries a record the server rejected: that record goes to ``rejected.ndjson`` beside the
spool, logged.
Nothing leaves the spool before the server answered for it.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from typing import Any

import httpx

from telemetry_client.spool import Spool

logger = logging.getLogger("telemetry_client")

# Whole-request answers that say the client is pointed or keyed wrong, not that the records are bad.
MISCONFIGURED = {401, 403, 404, 405, 407}
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
MAX_REQUEST_BYTES = 8 * 1024 * 1024
REJECTED_MAX_BYTES = 16 * 1024 * 1024


class Stats:
    def __init__(self) -> None:
        self.accepted = 0
        self.delivered = 0
        self.rejected = 0
        self.dropped = 0
        self.failed_requests = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


class Sender(threading.Thread):
    def __init__(
        self,
        spool: Spool,
        orphans: list[Spool],
        api_url: str,
        api_key: str | None,
        batch_size: int,
        flush_interval: float,
        fsync_interval: float,
        request_timeout: float,
        stats: Stats,
    ):
        super().__init__(name="telemetry-sender", daemon=True)
        self.spool = spool
        self.orphans = orphans
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.fsync_interval = fsync_interval
        self.stats = stats
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Api-Key {api_key}"
        self.http = httpx.Client(base_url=api_url.rstrip("/"), headers=headers, timeout=request_timeout)
        self.rejected_path = spool.path.parent / "rejected.ndjson"
        self.wake = threading.Event()  # records are waiting, or someone wants them sent now
        self.stopping = threading.Event()
        self.hurry = threading.Event()  # flush() or close(): retry now instead of finishing a backoff
        self.delivered = threading.Condition()
        self._attempt = 0

    # --- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        last_sync = time.monotonic()
        while True:
            try:
                spool = self._next_spool()
                if spool is None:
                    if self.stopping.is_set():
                        break
                    self.wake.wait(self.flush_interval)
                    self.wake.clear()
                elif not self._deliver_batch(spool) and self.stopping.is_set():
                    break  # the server is unreachable: what is left waits in the spool
                if time.monotonic() - last_sync >= self.fsync_interval:
                    self.spool.sync()
                    last_sync = time.monotonic()
            except Exception:  # the thread must survive anything
                logger.exception("telemetry: sender error (will retry)")
                self._sleep(self._backoff())
        self.spool.sync()
        self.http.close()

    def _next_spool(self) -> Spool | None:
        while self.orphans and not self.orphans[0].pending():
            self.orphans.pop(0).retire()
        if self.orphans:
            return self.orphans[0]
        return self.spool if self.spool.pending() else None

    def _deliver_batch(self, spool: Spool) -> bool:
        """Send the next batch of `spool`; False when it could not be delivered."""
        lines, position, consumed = spool.read(self.batch_size, MAX_REQUEST_BYTES)
        if not lines:
            if consumed:  # only torn bytes
                spool.ack(position, consumed)
            else:
                self.wake.wait(self.flush_interval)
                self.wake.clear()
            return True
        if len(lines) < self.batch_size and spool is self.spool and not self.stopping.is_set() and not self.wake.is_set():
            self.wake.wait(self.flush_interval)  # let a small batch fill up a little
            self.wake.clear()
            lines, position, consumed = spool.read(self.batch_size, MAX_REQUEST_BYTES)
        if not self._send(lines):
            return False
        spool.ack(position, consumed)
        with self.delivered:
            self.delivered.notify_all()
        return True

    # --- one request ------------------------------------------------------------------------
    def _send(self, lines: list[bytes]) -> bool:
        """True when the server answered for every line (stored, duplicate or rejected)."""
        body = b'{"items":[' + b",".join(line.rstrip(b"\n") for line in lines) + b"]}"
        try:
            # With Prefer, the server answers 207 when it rejects some records (200 if it stores them all).
            response = self.http.post("/api/v1/ingest", content=body, headers={"Prefer": "multi-status"})
        except httpx.HTTPError as exc:
            return self._failed(f"{type(exc).__name__}: {exc}")
        code = response.status_code
        if code == 200:  # every record stored or already there
            self._attempt = 0
            self.stats.delivered += len(lines)
            return True
        if code == 207:  # some rejected: find which
            self._attempt = 0
            self._record_results(lines, response.json().get("results", []))
            return True
        if code in (429, 503):  # busy, or a dependency of the server is down: wait as it asks
            delay = retry_after_seconds(response.headers.get("Retry-After"))
            return self._failed(f"{code} {response.reason_phrase}", delay if delay is not None else self._backoff())
        if code in MISCONFIGURED:
            # The records are fine; the key or the URL is not. Keep them until an operator fixes it.
            return self._failed(f"{code}: {response.text[:200]} (check TELEMETRY_API_URL and TELEMETRY_API_KEY)")
        if code == 400 and self._drop_unparsable(lines):
            return self._send(lines) if lines else True  # the rest again, without the corrupt lines
        if code == 413 and len(lines) > 1:
            half = len(lines) // 2
            return self._send(lines[:half]) and self._send(lines[half:])
        if 400 <= code < 500 and code != 408:
            for line in lines:
                self._reject(line, {"code": f"http_{code}", "message": response.text[:500]})
            return True
        return self._failed(f"{code}: {response.text[:200]}")

    def _record_results(self, lines: list[bytes], results: list[dict[str, Any]]) -> None:
        for line, result in zip(lines, results, strict=False):
            if result.get("status") == "rejected":
                self._reject(line, result.get("error", {}))
            else:
                self.stats.delivered += 1

    def _drop_unparsable(self, lines: list[bytes]) -> bool:
        """A corrupt line spoils the whole request: dead-letter it and let the rest go again."""
        bad = []
        for line in lines:
            try:
                json.loads(line)
            except ValueError:
                bad.append(line)
        for line in bad:
            self._reject(line, {"code": "unparsable", "message": "not JSON"})
            lines.remove(line)
        return bool(bad)

    def _reject(self, line: bytes, error: dict[str, Any]) -> None:
        self.stats.rejected += 1
        logger.warning(
            "telemetry: the server rejected a record (%s: %s); kept in %s",
            error.get("code"),
            error.get("message"),
            self.rejected_path,
        )
        try:
            if not self.rejected_path.exists() or self.rejected_path.stat().st_size < REJECTED_MAX_BYTES:
                with open(self.rejected_path, "ab") as handle:
                    handle.write(json.dumps({"error": error, "record": line.decode(errors="replace").rstrip()}).encode() + b"\n")
        except OSError as exc:
            logger.warning("telemetry: could not write %s: %s", self.rejected_path, exc)

    def _failed(self, reason: str, delay: float | None = None) -> bool:
        self.stats.failed_requests += 1
        delay = self._backoff() if delay is None else delay
        logger.warning("telemetry: delivery failed (%s); retrying in %.1f s", reason, delay)
        self._sleep(delay)
        return False

    def _backoff(self) -> float:
        self._attempt += 1
        return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**self._attempt))

    def _sleep(self, seconds: float) -> None:
        self.hurry.wait(seconds)
        self.hurry.clear()

    # --- for the client -----------------------------------------------------------------------
    @property
    def failing(self) -> bool:
        """Whether the last request failed (the server is down or refusing): not worth waiting on."""
        return self._attempt > 0

    def wait_delivered(self, spool: Spool, target: tuple[int, int], timeout: float) -> bool:
        """Block until the cursor of `spool` passes `target` (or `timeout`); True when it did."""
        deadline = time.monotonic() + timeout
        self.wake.set()
        self.hurry.set()
        with self.delivered:
            while spool.pending() and spool.cursor < target:
                left = deadline - time.monotonic()
                if left <= 0 or not self.is_alive():
                    return False
                self.delivered.wait(min(left, 0.1))
                self.wake.set()
        return True

    def stop(self, timeout: float) -> None:
        self.stopping.set()
        self.wake.set()
        self.hurry.set()
        self.join(timeout)
