"""Redis connections of a process: the sync pool (shared with the Django cache) and, for async
code, two asyncio clients per event loop: one for quick commands, whose pool makes a burst wait
for a free connection instead of failing, and one for reads that block (streams consume, the live
feed's reader, the wake-up subscription), which hold their connection while they wait."""

import asyncio
from weakref import WeakKeyDictionary

import redis.asyncio
import redis.exceptions
from django.conf import settings
from django_redis import get_redis_connection
from django_redis.exceptions import ConnectionInterrupted
from redis import Redis

_async_clients: WeakKeyDictionary = WeakKeyDictionary()
_blocking_clients: WeakKeyDictionary = WeakKeyDictionary()
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
    return _client(_async_clients, settings.REDIS_MAX_CONNECTIONS, SOCKET_TIMEOUT)


def get_async_blocking_redis() -> redis.asyncio.Redis:
    """For commands that wait (XREAD BLOCK, SUBSCRIBE): each holds a connection while it waits."""
    return _client(_blocking_clients, settings.REDIS_MAX_BLOCKING_CONNECTIONS, ASYNC_SOCKET_TIMEOUT)


def _client(clients: WeakKeyDictionary, max_connections: int, socket_timeout: float) -> redis.asyncio.Redis:
    loop = asyncio.get_running_loop()
    client = clients.get(loop)
    if client is None:
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=max_connections,
            timeout=POOL_TIMEOUT,
            socket_timeout=socket_timeout,
            socket_connect_timeout=SOCKET_CONNECT_TIMEOUT,
            health_check_interval=30,
        )
        client = clients[loop] = redis.asyncio.Redis(connection_pool=pool)
    return client
