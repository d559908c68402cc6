"""Health, the JSON error pages of the API paths, the 503 of a dependency that is down, and the
frame of the staff pages."""

from __future__ import annotations

import functools
import time

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.deprecation import MiddlewareMixin
from django.views import defaults
from django.views.decorators.http import require_GET

from core.api import error_body, unavailable_dependency, unavailable_response
from core.features import background_late_after, tick_age
from core.overload import exempt_from_shedding
from core.redis import get_redis

VERSION = "1.0.0"


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        result = check()
    except Exception as exc:  # noqa: BLE001 - any failure means "down", with its reason
        return {"status": "down", "error": f"{type(exc).__name__}: {exc}"}
    return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2), **(result or {})}


def _database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"vendor": connection.vendor}


def _background(redis_ok: bool) -> dict:
    """Worker and beat: ok when the worker recently ran the tick beat schedules."""
    if not redis_ok:
        return {"status": "unknown"}
    age = tick_age()
    if age is None:
        return {"status": "never", "hint": "start the Celery worker and beat (make run does)"}
    return {"status": "ok" if age < background_late_after() else "late", "last_tick_seconds_ago": round(age, 1)}


@exempt_from_shedding
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """200 when the database and Redis answer, 503 when either does not."""
    database = _timed(_database)
    redis = _timed(lambda: get_redis().ping() and None)
    healthy = database["status"] == redis["status"] == "ok"
    body = {
        "status": "ok" if healthy else "degraded",
        "version": VERSION,
        "database": database,
        "redis": redis,
        "worker_and_beat": _background(redis["status"] == "ok"),
    }
    return JsonResponse(body, status=200 if healthy else 503)


def staff_only(*permissions: str):
    """A page for staff holding every one of `permissions`: others are sent to the login page, as
    by the admin; a staff member without them gets a 403."""

    def decorate(view):
        @functools.wraps(view)
        def checked(request, *args, **kwargs):
            if not request.user.has_perms(permissions):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return staff_member_required(checked)

    return decorate


def staff_page(request: HttpRequest, template: str, **context) -> HttpResponse:
    """A page for staff in the admin's frame, without its navigation sidebar (/live/, /analytics/, /traces/)."""
    return render(request, template, {**admin.site.each_context(request), "is_nav_sidebar_enabled": False, **context})


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/api/") or request.path == "/health"


def not_found(request: HttpRequest, exception: Exception) -> JsonResponse:
    if _wants_json(request):
        return JsonResponse(error_body("not_found", f"No such path: {request.path}"), status=404)
    return defaults.page_not_found(request, exception)


def unknown_api_path(request: HttpRequest) -> JsonResponse:
    """The last API pattern: a path under /api/v1/ that no view has gets not_found's JSON 404 with
    DEBUG on as well, where Django answers its own HTML page instead of calling handler404."""
    return not_found(request, Http404())


def server_error(request: HttpRequest) -> JsonResponse:
    if _wants_json(request):
        return JsonResponse(error_body("server_error", "Internal server error; the details are in the server log."), status=500)
    return defaults.server_error(request)


class UnavailableMiddleware(MiddlewareMixin):
    """A view that failed because Redis or the database is down answers 503 (with Retry-After),
    not 500: for the views the API's own handlers do not cover (DRF's exception handler and
    core.api.async_endpoint do), such as /metrics, /v1/traces and the staff pages."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        dependency = unavailable_dependency(exception)
        if dependency is None:
            return None
        response = unavailable_response(dependency, exception)
        if _wants_json(request):
            return response
        page = HttpResponse(f"{dependency} is unavailable; retry later.", status=503, content_type="text/plain")
        page["Retry-After"] = response["Retry-After"]
        return page
