"""Redis connections of a process: the sync pool (shared with the Django cache) and, for async
views, one asyncio client per event loop."""

import asyncio
from weakref import WeakKeyDictionary

import redis.asyncio
from django.conf import settings
from django_redis import get_redis_connection
from redis import Redis

_async_clients: WeakKeyDictionary = WeakKeyDictionary()
# Longer than any blocking read we issue (streams consume: 30 s; live feed: 5 s). redis-py's
# default of 5 s would cut a longer XREAD BLOCK short with a TimeoutError.
ASYNC_SOCKET_TIMEOUT = 60


def get_redis() -> Redis:
    return get_redis_connection("default")


def get_async_redis() -> redis.asyncio.Redis:
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = _async_clients[loop] = redis.asyncio.Redis.from_url(
            settings.REDIS_URL, socket_timeout=ASYNC_SOCKET_TIMEOUT, health_check_interval=30
        )
    return client
