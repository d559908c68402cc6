import logging

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import SimpleRateThrottle

from core import quotas
from core.fastpaths.pipelined_redis import Script
from core.models import AgentKey
from core.redis import REDIS_DOWN, get_pipelined_redis, get_redis

logger = logging.getLogger(__name__)


class KeyRateThrottle(SimpleRateThrottle):
    """API_RATE_LIMIT (e.g. "600/min") per agent key, per staff user otherwise; off when unset.
    Counted in Redis (the Django cache's entry), so every web process shares the budget, by one
    script that reads and writes the request times: DRF's own read-then-write let requests that
    arrived together all pass. Without Redis the limit lets requests through: keys are checked
    against the database then, and a request that needs no Redis (ingest) should not fail for
    want of a counter. The async endpoints, the OTLP receiver, /metrics and the live feed's
    handshake count in the same entry (count_request)."""

    scope = "api"
    seconds_to_wait: float | None = None

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        entry = cache.make_key(self.get_cache_key(request, view))
        try:
            wait = get_redis().eval(_THROTTLE_LUA, 1, entry, self.duration, self.num_requests)
        except REDIS_DOWN as exc:
            logger.warning("rate limit: Redis is unavailable (%s); the request is let through", exc)
            return True
        if wait:  # (the script counted the refusal for /metrics)
            self.seconds_to_wait = float(wait)
            return False
        return True

    def wait(self) -> float | None:
        return self.seconds_to_wait

    def get_rate(self) -> str | None:
        return settings.API_RATE_LIMIT

    def get_cache_key(self, request, view) -> str:
        if isinstance(request.auth, AgentKey):
            ident = key_ident(request.auth)
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return f"throttle:{ident}"


def key_ident(key: AgentKey) -> str:
    return f"key:{key.prefix}"


# The rate limit, in one script on the cache entry (a JSON list of the request times in the
# window, newest first, as DRF's SimpleRateThrottle keeps them).
# KEYS: the entry. ARGV: the window (s), the requests it allows. Returns 0, or the seconds to wait.
_THROTTLE_LUA = f"""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local duration, allowed = tonumber(ARGV[1]), tonumber(ARGV[2])
local raw = redis.call('GET', KEYS[1])
local history = {{now}}
if raw then
  for _, stamp in ipairs(cjson.decode(raw)) do
    if stamp > now - duration then
      history[#history + 1] = stamp
    end
  end
end
if #history > allowed then
  redis.call('HINCRBY', '{quotas.REFUSALS_KEY}', 'throttled', 1)
  return tostring(duration - (now - history[#history]))
end
redis.call('SET', KEYS[1], cjson.encode(history), 'EX', math.ceil(duration))
return 0
"""
_THROTTLE = Script(_THROTTLE_LUA, get_pipelined_redis)


async def count_request(key: AgentKey | None) -> None:
    """Count a request of an agent key (not through DRF) under API_RATE_LIMIT; QuotaExceeded
    (429, `throttled`, with the seconds to wait) past it. Staff sessions are not counted here;
    without Redis the request is let through, as KeyRateThrottle does."""
    if key is None or not settings.API_RATE_LIMIT:
        return
    allowed, duration = SimpleRateThrottle.parse_rate(None, settings.API_RATE_LIMIT)
    try:
        wait = await _THROTTLE(keys=[_cache_key(key)], args=[duration, allowed])
    except REDIS_DOWN as exc:
        logger.warning("rate limit: Redis is unavailable (%s); the request is let through", exc)
        return
    _raise_if_refused(wait)


def count_request_sync(key: AgentKey) -> None:
    """count_request, for a sync view outside DRF (the OTLP receiver)."""
    if not settings.API_RATE_LIMIT:
        return
    allowed, duration = SimpleRateThrottle.parse_rate(None, settings.API_RATE_LIMIT)
    try:
        wait = get_redis().eval(_THROTTLE_LUA, 1, _cache_key(key), duration, allowed)
    except REDIS_DOWN as exc:
        logger.warning("rate limit: Redis is unavailable (%s); the request is let through", exc)
        return
    _raise_if_refused(wait)


def _cache_key(key: AgentKey) -> str:
    return cache.make_key(f"throttle:{key_ident(key)}")


def _raise_if_refused(wait) -> None:
    if wait:
        raise quotas.QuotaExceeded("throttled", wait=max(1, round(float(wait))))
