"""GET /metrics: Prometheus text, from collectors each app registers in its AppConfig.ready(); for a
client that does not ask for Prometheus's formats, local-telemetry's JSON counters instead.

Every figure is read at scrape time from the database or Redis, which all processes share, so
any web process answers for all of them. The server's own counts, kept by each process in
memory, reach Redis within a second (core.selfmetrics).

Prometheus always names its formats in `Accept`; local-telemetry's client (like curl) sends `*/*`.

Who may scrape: a staff session, an agent key with the `metrics:read` scope (Prometheus sends it
as `Authorization: Bearer <key>`; a key-less request from KEYLESS_WRITES_FROM is KEYLESS_KEY's), or
an address in METRICS_ALLOWED_IPS (core.addresses; none by default).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily
from rest_framework import exceptions

from core import quotas
from core.addresses import client_in
from core.api import error_response
from core.authentication import key_with_scope
from core.events import published_counts
from core.permissions import is_staff, lacks_permissions, missing_permissions
from core.throttling import count_request_sync

REGISTRY = CollectorRegistry(auto_describe=False)
SCOPE = "metrics:read"
# The Accept media types of Prometheus's formats (text, OpenMetrics, protobuf): any of them gets the text.
PROMETHEUS_MEDIA_TYPES = ("text/plain", "application/openmetrics-text", "application/vnd.google.protobuf")


TEXT_SOURCES: list[Callable[[], str]] = []  # functions that write their families' text themselves
JSON_SOURCES: list[Callable[[], dict]] = []  # functions that give counters to the JSON form


def register(collector) -> None:
    """Add a collector (an object whose collect() yields metric families) to /metrics."""
    REGISTRY.register(collector)


def register_text(source: Callable[[], str]) -> None:
    """Add a function returning families already in the text format (for many series, where
    prometheus_client's per-sample exposition costs too much)."""
    TEXT_SOURCES.append(source)


def register_json(source: Callable[[], dict]) -> None:
    """Add a function returning counters (JSON-ready) to the JSON form of /metrics."""
    JSON_SOURCES.append(source)


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


def _check_access(request: HttpRequest) -> None:
    if client_in(request, settings.METRICS_ALLOWED_IPS):
        return
    if is_staff(request.user):
        if missing := missing_permissions(request.user, SCOPE):
            raise lacks_permissions(missing)
        return
    # A key's scrape reads every collector (the database and Redis): under API_RATE_LIMIT as any request.
    count_request_sync(key_with_scope(request, SCOPE))


def wants_prometheus_text(request: HttpRequest) -> bool:
    accept = request.META.get("HTTP_ACCEPT", "").lower()
    return any(media_type in accept for media_type in PROMETHEUS_MEDIA_TYPES)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    try:
        _check_access(request)
    except exceptions.APIException as exc:
        return error_response(exc)
    if wants_prometheus_text(request):
        response = HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
    else:
        response = JsonResponse({name: value for source in JSON_SOURCES for name, value in source().items()})
    patch_vary_headers(response, ["Accept"])
    return response
