"""Redis connections of a process: the sync pool (shared with the Django cache) and, for async
code, two asyncio clients per event loop: one for quick commands, whose pool makes a burst wait
for a free connection instead of failing, and one for reads that block (streams consume, the live
feed's reader, the wake-up subscription), which hold their connection while they wait."""

import asyncio
from weakref import WeakKeyDictionary

import redis.asyncio
from django.conf import settings
from django_redis import get_redis_connection
from redis import Redis

_async_clients: WeakKeyDictionary = WeakKeyDictionary()
_blocking_clients: WeakKeyDictionary = WeakKeyDictionary()
# Longer than any blocking read we issue (streams consume: 30 s; live feed: 5 s). redis-py's
# default of 5 s would cut a longer XREAD BLOCK short with a TimeoutError.
ASYNC_SOCKET_TIMEOUT = 60
# Seconds a command waits for a free connection before it fails.
POOL_TIMEOUT = 10


def get_redis() -> Redis:
    return get_redis_connection("default")


def get_async_redis() -> redis.asyncio.Redis:
    """For commands that answer at once."""
    return _client(_async_clients, settings.REDIS_MAX_CONNECTIONS)


def get_async_blocking_redis() -> redis.asyncio.Redis:
    """For commands that wait (XREAD BLOCK, SUBSCRIBE): each holds a connection while it waits."""
    return _client(_blocking_clients, settings.REDIS_MAX_BLOCKING_CONNECTIONS)


def _client(clients: WeakKeyDictionary, max_connections: int) -> redis.asyncio.Redis:
    loop = asyncio.get_running_loop()
    client = clients.get(loop)
    if client is None:
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=max_connections,
            timeout=POOL_TIMEOUT,
            socket_timeout=ASYNC_SOCKET_TIMEOUT,
            health_check_interval=30,
        )
        client = clients[loop] = redis.asyncio.Redis(connection_pool=pool)
    return client
