"""Database connections of async code.

Django keeps a database connection per thread, and under ASGI each request that calls sync code
gets a thread of its own, whose connection Django closes when the request ends. Async code sees
neither (connections are strictly per thread), so it learns here whether its request opened one:
to close it before a long wait (a thousand held waits would otherwise keep a thousand, and with
PostgreSQL's pool DATABASE_POOL_MAX_SIZE of them stall their web process), and at the end of a
request served without Django's own handler.
"""

from __future__ import annotations

import contextvars

from asgiref.sync import sync_to_async
from django.db import connections
from django.db.backends.signals import connection_created
from django.dispatch import receiver

# Set in the request's thread; asgiref carries context variables back to the awaiting code.
_opened = contextvars.ContextVar("database_connection_opened", default=False)


@receiver(connection_created)
def _note_connection(sender, connection, **kwargs) -> None:
    _opened.set(True)


def start_request() -> None:
    """A request starts having opened no connection, whatever the context it was started from."""
    _opened.set(False)


def opened_connection() -> bool:
    """Whether sync code of the current request (or task) opened a database connection."""
    return _opened.get()


async def give_back_connections() -> None:
    """Close the connections the current request's sync code opened (outside a transaction)."""
    if _opened.get():
        await sync_to_async(close_connections)()
        _opened.set(False)


def close_connections() -> None:
    """Close this thread's connections, but not one inside a transaction."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


def close_obsolete_connections() -> None:
    """What Django does at the end of a request, for this thread's connections outside a
    transaction: close those past CONN_MAX_AGE (PostgreSQL's, back to their pool) or broken."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()
