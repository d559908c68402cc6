"""Redis connections of a process: the sync pool (shared with the Django cache) and, for async
code, per event loop: two asyncio clients, one for quick commands, whose pool makes a burst wait
for a free connection instead of failing, and one for reads that block (streams consume, the live
feed's reader, the wake-up subscription), which hold their connection while they wait; and one
pipelined connection for the scripts of the hot path (core.fastpaths.pipelined_redis)."""

import asyncio
from collections.abc import Callable
from typing import Any

import redis.asyncio
import redis.exceptions
from django.conf import settings
from django_redis import get_redis_connection
from django_redis.exceptions import ConnectionInterrupted
from redis import Redis

from core.fastpaths.pipelined_redis import PipelinedRedis

# Each by event loop (its connections belong to it).
_async_clients: dict = {}
_blocking_clients: dict = {}
_pipelined: dict = {}
# Seconds a command may wait for Redis's answer (or a connection) before it fails, as the sync
# pool's (settings.CACHES): a Redis that hangs (paused, overloaded) fails requests, with a 503,
# instead of holding them.
SOCKET_TIMEOUT = 5
SOCKET_CONNECT_TIMEOUT = 2
# For the blocking client: longer than any blocking read we issue (streams consume: 30 s; live
# feed: 5 s), which the quick timeout would cut short with a TimeoutError.
ASYNC_SOCKET_TIMEOUT = 60
# Seconds a command waits for a free connection before it fails.
POOL_TIMEOUT = 10
# What a command raises when Redis is down, hangs or is out of reach (django-redis re-raises
# redis-py's own errors, or wraps them).
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ConnectionInterrupted)


def get_redis() -> Redis:
    return get_redis_connection("default")


def get_async_redis() -> redis.asyncio.Redis:
    """For commands that answer at once."""
    return for_event_loop(_async_clients, lambda: _client(settings.REDIS_MAX_CONNECTIONS, SOCKET_TIMEOUT))


def get_async_blocking_redis() -> redis.asyncio.Redis:
    """For commands that wait (XREAD BLOCK, SUBSCRIBE): each holds a connection while it waits."""
    return for_event_loop(_blocking_clients, lambda: _client(settings.REDIS_MAX_BLOCKING_CONNECTIONS, ASYNC_SOCKET_TIMEOUT))


def get_pipelined_redis() -> PipelinedRedis:
    """For quick commands on the hot path (the scripts, core.fastpaths.pipelined_redis.Script)."""
    return for_event_loop(_pipelined, lambda: PipelinedRedis(settings.REDIS_URL, SOCKET_TIMEOUT, SOCKET_CONNECT_TIMEOUT))


def for_event_loop(registry: dict, make: Callable) -> Any:
    """The running event loop's object in `registry` (a client, the wake-ups, the live feed), made
    on its first use there. Keyed by the loop itself, not weakly: these objects hold their loop
    (through their sockets and tasks), so a weak key would never go; a loop that has closed (a
    test's) is dropped when a new one comes."""
    loop = asyncio.get_running_loop()
    found = registry.get(loop)
    if found is None:
        for closed in [other for other in registry if other.is_closed()]:
            del registry[closed]
        found = registry[loop] = make()
    return found


def _client(max_connections: int, socket_timeout: float) -> redis.asyncio.Redis:
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        settings.REDIS_URL,
        max_connections=max_connections,
        timeout=POOL_TIMEOUT,
        socket_timeout=socket_timeout,
        socket_connect_timeout=SOCKET_CONNECT_TIMEOUT,
        health_check_interval=30,
    )
    return redis.asyncio.Redis(connection_pool=pool)
