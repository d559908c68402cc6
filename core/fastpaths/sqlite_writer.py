"""One SQLite writer at a time per process, queued on a Python lock.

SQLite lets one connection write at a time. A connection that finds the write lock taken waits in
SQLite's busy handler, which sleeps 1, 2, 5, 10... up to 100 ms between tries whatever the holder
does: with a few threads of one process writing at once, each write's wait is the sum of those
sleeps (a p99 of seconds at 64 clients), and the lock sits idle between them. Here the threads of
a process take a Python lock around each write transaction (BEGIN IMMEDIATE to its end): the next
one starts as soon as the holder commits. Between processes the busy handler still applies.

Stands in for Django's sqlite3 DatabaseWrapper on the agent API's threads (AgentApiHandler).
Uses DatabaseWrapper._start_transaction_under_autocommit (Django calls it at the outermost
atomic block's start on SQLite), set_autocommit (called with True at that block's end, before the
on-commit hooks run) and close."""

import threading

from django.db import OperationalError
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
            WRITE_LOCK.release()
