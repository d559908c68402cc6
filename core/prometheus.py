"""GET /metrics: Prometheus text, from collectors each app registers in its AppConfig.ready().

Every figure is read at scrape time from the database or Redis, which all processes share, so
any web process answers for all of them. The server's own counts, kept by each process in
memory, reach Redis within a second (core.selfmetrics).

Who may scrape: a staff session, an agent key with the `metrics:read` scope (Prometheus sends it
as `Authorization: Bearer <key>`), or an address in METRICS_ALLOWED_IPS (addresses or networks;
none by default: behind a reverse proxy every request comes from the proxy's address).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily
from rest_framework import exceptions

from core import quotas
from core.api import authorization, error_response
from core.authentication import key_with_scope
from core.events import published_counts
from core.permissions import is_staff, lacks_permissions, missing_permissions
from core.throttling import count_request_sync

REGISTRY = CollectorRegistry(auto_describe=False)
SCOPE = "metrics:read"


TEXT_SOURCES: list[Callable[[], str]] = []  # functions that write their families' text themselves


def register(collector) -> None:
    """Add a collector (an object whose collect() yields metric families) to /metrics."""
    REGISTRY.register(collector)


def register_text(source: Callable[[], str]) -> None:
    """Add a function returning families already in the text format (for many series, where
    prometheus_client's per-sample exposition costs too much)."""
    TEXT_SOURCES.append(source)


def exposition() -> bytes:
    return generate_latest(REGISTRY) + "".join(source() for source in TEXT_SOURCES).encode()


class EventMetrics:
    """Events published to the streams, by type: stream and signal throughput (`rate()` of it)."""

    def collect(self):
        family = CounterMetricFamily("telemetry_events", "Events published to the streams, by type", labels=["event_type"])
        for event_type, count in sorted(published_counts().items()):
            family.add_metric([event_type], count)
        yield family


class QuotaMetrics:
    """Requests refused by each of a key's bounds (core.quotas), and the bounds' settings."""

    def collect(self):
        family = CounterMetricFamily(
            "telemetry_quota_refusals", "Requests refused by a bound on what one key may consume", labels=["bound"]
        )
        counts = quotas.refusal_counts()
        for bound in sorted(quotas.BOUNDS):
            family.add_metric([bound], counts.get(bound, 0))
        yield family


def _allowed_address(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(allowed, strict=False) for allowed in settings.METRICS_ALLOWED_IPS)


def _check_access(request: HttpRequest) -> None:
    if _allowed_address(request.META.get("REMOTE_ADDR", "")):
        return
    if is_staff(request.user):
        if missing := missing_permissions(request.user, SCOPE):
            raise lacks_permissions(missing)
        return
    # A key's scrape reads every collector (the database and Redis): under API_RATE_LIMIT as any request.
    count_request_sync(key_with_scope(authorization(request), SCOPE))


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    try:
        _check_access(request)
    except exceptions.APIException as exc:
        return error_response(exc)
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
