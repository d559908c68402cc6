"""One SQLite writer at a time among the agent API's threads, queued on locks that wake the next
writer as soon as the holder is done.

SQLite lets one connection write at a time. A connection that finds the write lock taken waits in
SQLite's busy handler, which sleeps 1, 2, 5, 10... up to 100 ms between tries whatever the holder
does: with a few threads writing at once, each write's wait is the sum of those sleeps (a p99 of
seconds at 64 clients), and the lock sits idle between them. Here a write transaction (BEGIN
IMMEDIATE to its end) first takes a Python lock, which queues the threads of one process, then an
flock on a file beside the database, which queues the web processes: the next starts as soon as
the holder commits. Other writers (the worker, beat, commands) still meet the busy handler; a
holder waits on them at most the busy timeout, so the flock is held no longer than that.

Stands in for Django's sqlite3 DatabaseWrapper on the agent API's threads (AgentApiHandler).
Uses DatabaseWrapper._start_transaction_under_autocommit (Django calls it at the outermost
atomic block's start on SQLite), set_autocommit (called with True at that block's end, before the
on-commit hooks run) and close."""

import fcntl
import functools
import os
import threading

from django.db import OperationalError, connections
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteWrapper

# Held from a write transaction's BEGIN to its end, by one thread of the process at a time.
WRITE_LOCK = threading.Lock()


class OneWriterWrapper(SQLiteWrapper):
    """Django's SQLite connection, taking WRITE_LOCK for each transaction. A thread that cannot
    have it within the busy timeout gets "database is locked", as from SQLite (a 503)."""

    holds_write_lock = False

    def _start_transaction_under_autocommit(self):
        if not WRITE_LOCK.acquire(timeout=self.settings_dict["OPTIONS"].get("timeout", 5)):
            raise OperationalError("database is locked (another thread of this process is writing)")
        self.holds_write_lock = True
        try:
            if (lock_file := writers_lock_file(self.settings_dict["NAME"])) is not None:
                fcntl.flock(lock_file, fcntl.LOCK_EX)
            super()._start_transaction_under_autocommit()
        except BaseException:
            self.release_write_lock()
            raise

    def set_autocommit(self, autocommit, force_begin_transaction_with_broken_autocommit=False):
        if autocommit:  # the transaction has ended (committed or rolled back)
            self.release_write_lock()
        super().set_autocommit(autocommit, force_begin_transaction_with_broken_autocommit)

    def close(self):
        try:
            super().close()
        finally:
            self.release_write_lock()

    def release_write_lock(self) -> None:
        if self.holds_write_lock:
            self.holds_write_lock = False
            if (lock_file := writers_lock_file(self.settings_dict["NAME"])) is not None:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
            WRITE_LOCK.release()


@functools.cache
def writers_lock_file(database: str) -> int | None:
    """The descriptor of the file the web processes writing `database` take turns on (None for
    a database in memory). An flock is the process's: the kernel drops it if the process dies."""
    if database == ":memory:" or str(database).startswith("file:"):
        return None
    return os.open(f"{database}-writers", os.O_RDWR | os.O_CREAT, 0o600)


def one_sqlite_writer() -> None:
    """This thread's SQLite connections: persistent (CONN_MAX_AGE None) and one writer a process,
    for this thread only (Django's own handler still gives each request a new thread, whose
    connection must close)."""
    for alias in connections:
        wrapper = connections[alias]
        if type(wrapper) is SQLiteWrapper:  # Django's own, not a subclass with behaviour of its own
            wrapper.settings_dict = {**wrapper.settings_dict, "CONN_MAX_AGE": None}
            wrapper.__class__ = OneWriterWrapper
