"""The local spool: every accepted record is appended here before the call returns, and leaves only
once the server has acknowledged it.

Layout: ``<spool_dir>/slot-<n>/`` holds numbered NDJSON segments and a ``cursor`` file (segment
and offset of the first unacknowledged byte). A process owns one slot, locked for its lifetime
(``flock``; on Windows ``msvcrt.locking``), so agents sharing a spool dir never share files; the
lock dies with the process, so a restarted agent (or any other on the machine) replays what a
killed one left.

Durability: each record is one ``os.write`` of a whole line to an O_APPEND file, so it is in the
kernel before the call returns and survives the process being killed. The sender fsyncs every
`fsync_interval` seconds: a power loss can lose at most that much. A torn last line (the process
died inside a write) is skipped on replay; a new process always starts a new segment.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

logger = logging.getLogger("telemetry_client")

SEGMENT_BYTES = 4 * 1024 * 1024
BINARY = getattr(os, "O_BINARY", 0)  # Windows would otherwise write each newline as two bytes


def _lock_file(fd: int) -> bool:
    """Lock the open file `fd` for this process; False when another process holds it."""
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except PermissionError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock_file(fd: int) -> None:
    # A flock goes with the last descriptor of the file (a forked child closing its copy must not
    # unlock the parent's); Windows asks for its locks to be released before the close.
    if sys.platform == "win32":
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    os.close(fd)


def _segment_name(number: int) -> str:
    return f"{number:010d}.ndjson"


class Spool:
    """One slot of the spool: an append side (agent threads) and a read side (the sender)."""

    def __init__(self, path: Path, lock_fd: int, max_bytes: int, append: bool = True):
        self.path = path
        self.lock_fd = lock_fd
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        segments = self._segments()
        self.cursor = self._load_cursor(segments)
        self.size = sum((path / _segment_name(n)).stat().st_size for n in segments if n >= self.cursor[0]) - self.cursor[1]
        self.write_segment = (segments[-1] + 1) if segments else self.cursor[0]
        self.write_fd: int | None = None
        self.write_offset = 0
        if append:
            if self.size == 0:  # all delivered: start clean rather than keep empty segments around
                for number in segments:
                    (path / _segment_name(number)).unlink(missing_ok=True)
                (path / "cursor").unlink(missing_ok=True)
                self.cursor = (self.write_segment, 0)
            self._open_segment(self.write_segment)

    # --- owning a slot -----------------------------------------------------------------
    @classmethod
    def claim(cls, root: Path, max_bytes: int) -> Spool:
        """The first free slot under `root`, locked for this process."""
        root.mkdir(parents=True, exist_ok=True)
        number = 0
        while True:
            spool = cls._try_lock(root / f"slot-{number}", max_bytes, append=True)
            if spool:
                return spool
            number += 1

    @classmethod
    def orphans(cls, root: Path, max_bytes: int) -> list[Spool]:
        """Slots no live process holds that still have records: left by agents that died."""
        found = []
        for path in sorted(root.glob("slot-*")):
            spool = cls._try_lock(path, max_bytes, append=False)
            if spool is None:
                continue
            if spool.pending():
                found.append(spool)
            else:
                spool.release()
        return found

    @classmethod
    def _try_lock(cls, path: Path, max_bytes: int, append: bool) -> Spool | None:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT | BINARY, 0o600)
        try:
            locked = _lock_file(fd)
        except BaseException:
            os.close(fd)
            raise
        if not locked:
            os.close(fd)
            return None
        return cls(path, fd, max_bytes, append=append)

    def retire(self) -> None:
        """Release a drained orphan slot and remove its files."""
        for path in self.path.glob("*.ndjson"):
            path.unlink(missing_ok=True)
        (self.path / "cursor").unlink(missing_ok=True)
        self.release()

    def release(self) -> None:
        if self.write_fd is not None:
            os.close(self.write_fd)
            self.write_fd = None
        _unlock_file(self.lock_fd)

    # --- the append side -----------------------------------------------------------------
    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.path.glob("*.ndjson"))

    def _open_segment(self, number: int) -> None:
        if self.write_fd is not None:
            os.close(self.write_fd)
        self.write_segment = number
        self.write_fd = os.open(self.path / _segment_name(number), os.O_WRONLY | os.O_CREAT | os.O_APPEND | BINARY, 0o600)
        self.write_offset = os.fstat(self.write_fd).st_size

    def append(self, line: bytes) -> bool:
        """Write one newline-terminated record; False (nothing written) when the spool is full."""
        with self._lock:
            if self.size + len(line) > self.max_bytes:
                return False
            if self.write_offset >= SEGMENT_BYTES:
                self._open_segment(self.write_segment + 1)
            assert self.write_fd is not None, "append to a spool opened for replay only"
            os.write(self.write_fd, line)
            self.write_offset += len(line)
            self.size += len(line)
            return True

    def sync(self) -> None:
        with self._lock:
            if self.write_fd is not None:
                os.fsync(self.write_fd)

    # --- the read side (the sender only) ---------------------------------------------------
    def _load_cursor(self, segments: list[int]) -> tuple[int, int]:
        try:
            segment, offset = (int(x) for x in (self.path / "cursor").read_text().split())
        except (OSError, ValueError):
            return (segments[0], 0) if segments else (0, 0)
        if segments and segment < segments[0]:
            return segments[0], 0
        return segment, offset

    def pending(self) -> bool:
        return self.size > 0

    def read(self, max_records: int, max_bytes: int) -> tuple[list[bytes], tuple[int, int], int]:
        """Complete records from the cursor on: (lines, the position after them, bytes consumed).

        A fragment without its newline is left for later while its segment is being written;
        in a finished segment it is a torn record (its writer died mid-write): skipped and logged."""
        lines: list[bytes] = []
        segment, offset = self.cursor
        consumed = 0
        while len(lines) < max_records and consumed < max_bytes:
            budget = max_bytes - consumed
            chunk = self._read_chunk(segment, offset, budget)
            whole = chunk[: chunk.rfind(b"\n") + 1]
            for line in whole.splitlines(keepends=True)[: max_records - len(lines)]:
                lines.append(line)
                offset += len(line)
                consumed += len(line)
            at_eof = len(chunk) < budget
            if len(lines) >= max_records or not at_eof or self._is_live(segment):
                break
            torn = len(chunk) - len(whole)
            if torn:
                logger.warning("telemetry: skipping a torn record (%d bytes) in segment %d of %s", torn, segment, self.path)
                offset += torn
                consumed += torn
            later = [n for n in self._segments() if n > segment]
            if not later:
                break
            segment, offset = later[0], 0
        return lines, (segment, offset), consumed

    def _read_chunk(self, segment: int, offset: int, budget: int) -> bytes:
        try:
            with open(self.path / _segment_name(segment), "rb") as handle:
                handle.seek(offset)
                return handle.read(budget)
        except FileNotFoundError:
            return b""

    def _is_live(self, segment: int) -> bool:
        return self.write_fd is not None and segment == self.write_segment

    def ack(self, position: tuple[int, int], consumed: int) -> None:
        """Everything before `position` is delivered (or dead-lettered): move the cursor, drop old segments."""
        self.cursor = position
        tmp = self.path / "cursor.tmp"
        tmp.write_text(f"{position[0]} {position[1]}")
        os.replace(tmp, self.path / "cursor")
        with self._lock:
            self.size -= consumed
        for number in self._segments():
            if number < position[0]:
                (self.path / _segment_name(number)).unlink(missing_ok=True)
