import logging

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from core.models import AgentKey
from core.redis import REDIS_DOWN

logger = logging.getLogger(__name__)


class KeyRateThrottle(SimpleRateThrottle):
    """API_RATE_LIMIT (e.g. "600/min") per agent key, per staff user otherwise; off when unset.
    Counted in Redis (the Django cache), so every web process shares the budget. Without Redis
    the limit lets requests through: keys are checked against the database then, and a request
    that needs no Redis (ingest) should not fail for want of a counter."""

    scope = "api"

    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except REDIS_DOWN as exc:
            logger.warning("rate limit: Redis is unavailable (%s); the request is let through", exc)
            return True

    def get_rate(self) -> str | None:
        return settings.API_RATE_LIMIT

    def get_cache_key(self, request, view) -> str:
        if isinstance(request.auth, AgentKey):
            ident = f"key:{request.auth.prefix}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return f"throttle:{ident}"
