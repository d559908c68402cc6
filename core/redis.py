"""The one Redis connection pool of a process (shared with the Django cache)."""

from django_redis import get_redis_connection
from redis import Redis


def get_redis() -> Redis:
    return get_redis_connection("default")
