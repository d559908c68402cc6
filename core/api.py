"""The API's common ground: one error body shape, validation, pagination.

Every error the API returns has the body ``{"error": {"code", "message", "fields"?}}``. A
dependency that is down (Redis, the database) is a 503 with ``Retry-After`` and the code
``unavailable``, from every kind of view (see `unavailable_dependency`).
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import kombu.exceptions
import pydantic
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import DataError, InterfaceError, OperationalError
from django.http import Http404, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions
from rest_framework.permissions import SAFE_METHODS
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import exception_handler as drf_exception_handler

from core.authentication import (
    CHALLENGE,
    KeyCheck,
    StaleKey,
    authenticate_key_async,
    check_key_ahead,
    forget_known,
    key_from_header,
    keyless,
    keyless_key_async,
    remembered_key,
)
from core.models import AgentKey
from core.parsers import parse_json
from core.permissions import SAFE_ALIASES, is_staff, lacks_permissions
from core.redis import REDIS_DOWN
from core.scopes import permissions_for
from core.throttling import count_request

Schema = TypeVar("Schema", bound=pydantic.BaseModel)
logger = logging.getLogger(__name__)
# Seconds a client is asked to wait before retrying a request refused because a dependency is down.
UNAVAILABLE_RETRY_AFTER = 3


def error_body(code: str, message: str, fields: dict[str, list[str]] | None = None) -> dict:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def describe(exc: Exception) -> dict:
    """The error body for an exception DRF knows how to answer."""
    if isinstance(exc, Http404):
        return error_body("not_found", str(exc) or "Not found.")
    if isinstance(exc, DjangoPermissionDenied):
        return error_body("permission_denied", str(exc) or "You may not do this.")
    detail = exc.detail
    if isinstance(detail, dict):
        fields = {name: [str(m) for m in (msgs if isinstance(msgs, list) else [msgs])] for name, msgs in detail.items()}
        return error_body("invalid", "Invalid input: see fields.", fields)
    if isinstance(detail, list):
        return error_body("invalid", " ".join(str(m) for m in detail))
    return error_body(getattr(detail, "code", None) or exc.default_code, str(detail))


def unavailable_dependency(exc: BaseException) -> str | None:
    """The dependency `exc` says is down or out of reach, by name; None for any other error.

    Redis (a connection or timeout error, as redis-py, django-redis or Celery's broker client
    raise it) and the database (a lost or refused connection; on SQLite only "database is
    locked": its other OperationalErrors are bugs such as a missing table)."""
    if isinstance(exc, REDIS_DOWN):
        return "Redis"
    if isinstance(exc, kombu.exceptions.OperationalError):
        return "Redis (the task queue)"
    if isinstance(exc, InterfaceError):
        return "the database"
    if isinstance(exc, OperationalError):
        if isinstance(exc.__cause__, sqlite3.Error) and "locked" not in str(exc):
            return None
        return "the database"
    return None


def unavailable_response(dependency: str, exc: BaseException) -> JsonResponse:
    """The 503 for a request that failed because `dependency` is down (logged, without traceback)."""
    logger.warning("%s is unavailable (%s: %s): answered 503", dependency, type(exc).__name__, exc)
    body = error_body("unavailable", f"{dependency} is unavailable; retry later")
    return JsonResponse(body, status=503, headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER)})


def refused_by_database(exc: BaseException) -> exceptions.ValidationError | None:
    """A DataError is a value of the request the database cannot take (text holding NUL, a number
    out of a column's range): the client's 400, not a 500. The API's checks refuse such values
    first (core.parsers, the schemas, core.converters); this is the net under the rest (a query
    parameter compared with a column, say). Only the first line: the rest may quote the SQL."""
    if not isinstance(exc, DataError):
        return None
    logger.warning("the database refused a value of the request: %s", exc)
    first_line = str(exc).partition("\n")[0]
    return exceptions.ValidationError(f"The database cannot take a value of this request: {first_line}")


def failure_response(exc: BaseException) -> JsonResponse | None:
    """The reply to an exception that is no bug of ours: 503 when a dependency is down, 400 when
    the database refused a value of the request; None for any other. DRF's views and the async
    endpoints both answer through it."""
    if dependency := unavailable_dependency(exc):
        return unavailable_response(dependency, exc)
    if refused := refused_by_database(exc):
        return error_response(refused)
    return None


def exception_handler(exc: Exception, context: dict) -> HttpResponse | None:
    if (failure := failure_response(exc)) is not None:
        return failure
    response = drf_exception_handler(exc, context)
    if response is not None:
        response.data = describe(exc)
    return response


def validation_fields(exc: pydantic.ValidationError) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for err in exc.errors(include_url=False, include_input=False):
        name = ".".join(str(part) for part in err["loc"]) or "body"
        fields.setdefault(name, []).append(err["msg"])
    return fields


def validate(schema: type[Schema], data: Any) -> Schema:
    """`data` checked against a pydantic schema; a 400 listing every bad field otherwise."""
    try:
        return schema.model_validate(data)
    except pydantic.ValidationError as exc:
        raise exceptions.ValidationError(validation_fields(exc)) from None


class LimitOffsetPage:
    """`?limit=&offset=` paging for newest-first lists: the body stays a bare list (as local-telemetry's
    clients expect) and the next page is in the `Link` header. No COUNT(*) on big tables."""

    default_limit = 100
    max_limit = 1000
    max_offset = 10**12  # far past any table; a larger one overflows the database's integers (a 500)

    def __init__(self, request):
        self.request = request
        self.limit = bounded_int(request.query_params, "limit", self.default_limit, 1, self.max_limit)
        self.offset = bounded_int(request.query_params, "offset", 0, 0, self.max_offset)

    def rows(self, queryset) -> list:
        rows = list(queryset[self.offset : self.offset + self.limit + 1])
        self.has_next = len(rows) > self.limit
        return rows[: self.limit]

    def response(self, data: list) -> Response:
        headers = {}
        if self.has_next:
            url = self.request.build_absolute_uri()
            url = replace_query_param(url, "offset", self.offset + self.limit)
            headers["Link"] = f'<{replace_query_param(url, "limit", self.limit)}>; rel="next"'
        return Response(data, headers=headers)


def async_endpoint(
    scopes: dict[str, str],
    bodies: dict[str, type[pydantic.BaseModel]] | None = None,
    key_checked_in_script: frozenset[str] = frozenset(),
    session_permissions: dict[str, tuple[str, ...]] | None = None,
    documented: dict[str, tuple[type[pydantic.BaseModel] | None, type[pydantic.BaseModel]]] | None = None,
):
    """An async JSON view (it holds no thread while it waits): checks the method and the scope it
    needs (`scopes` by method: a key must hold it, a staff session the model permissions behind
    it, or those `session_permissions` names for the method instead), and CSRF for a session; the
    view gets the request, the agent key (None for staff) and the URL's arguments, and for a
    method in `bodies` the JSON body checked against its schema (`body=`). It returns data for a
    JSON reply (or a response). API exceptions become the API's error reply, a dependency that is
    down a 503. The OpenAPI schema describes it from the same `scopes` and `bodies` (core.openapi).

    For a method in `key_checked_in_script`, a key this process knows is taken without reading
    Redis, and the view gets `key_check=` to pass to the one EventScript that does its work (None
    when the key was read afresh, or for staff). The view must write nothing before that script:
    when the key changed meanwhile, the script raises StaleKey and the view runs again on the key
    read afresh.

    `documented` adds to the OpenAPI schema, by method, the body a view reads itself (or None) and
    the one it answers."""
    bodies = bodies or {}
    session_permissions = session_permissions or {}

    def decorate(view):
        @functools.wraps(view)
        async def endpoint(request, *args, **kwargs):
            try:
                scope = scopes.get(SAFE_ALIASES.get(request.method, request.method))
                if scope is None:
                    raise exceptions.MethodNotAllowed(request.method)
                checked_in_script = request.method in key_checked_in_script
                known = remembered_principal(request, scope) if checked_in_script else None
                needs = session_permissions.get(request.method)
                key, key_check = known or (await authorize(request, scope, needs), None)
                await count_request(key)
                if key is None and request.method not in SAFE_METHODS:
                    _check_csrf(request)
                if request.method in bodies:
                    kwargs["body"] = json_body(request, bodies[request.method])
                if checked_in_script:
                    kwargs["key_check"] = key_check
                try:
                    result = await view(request, key, *args, **kwargs)
                except StaleKey:
                    forget_known(key_check)
                    key = await authorize(request, scope, needs)
                    result = await view(request, key, *args, **{**kwargs, "key_check": None})
            except exceptions.APIException as exc:
                return error_response(exc)
            except Exception as exc:
                if (failure := failure_response(exc)) is not None:
                    return failure
                raise
            return result if isinstance(result, HttpResponse) else JsonResponse(result, safe=False)

        endpoint.api = AsyncEndpointDoc(scopes, bodies, view.__doc__ or "", documented or {})
        return csrf_exempt(endpoint)

    return decorate


def by_method(view, **endpoints):
    """One URL served by two kinds of view: the methods named in `endpoints` (POST=...) by those
    async endpoints, the others by `view` (a DRF view, on a thread). drf-spectacular documents
    `view`'s methods (through its `cls`), core.openapi the endpoints'."""
    by_name = {method.upper(): endpoint for method, endpoint in endpoints.items()}

    async def dispatch(request, *args, **kwargs):
        endpoint = by_name.get(request.method)
        if endpoint is not None:
            return await endpoint(request, *args, **kwargs)
        await check_key_ahead(request)  # as the agent API's handler does before a sync view
        return await sync_to_async(view)(request, *args, **kwargs)

    dispatch.cls, dispatch.initkwargs = view.cls, view.initkwargs
    dispatch.endpoints = list(by_name.values())
    return csrf_exempt(dispatch)


@dataclass(frozen=True)
class AsyncEndpointDoc:
    scopes: dict[str, str]
    bodies: dict[str, type[pydantic.BaseModel]]
    doc: str
    documented: dict[str, tuple[type[pydantic.BaseModel] | None, type[pydantic.BaseModel]]]


def _check_csrf(request) -> None:
    """As DRF's SessionAuthentication: a session's unsafe request needs the CSRF token."""
    refusal = CsrfViewMiddleware(lambda _: None).process_view(request, None, (), {})
    if refusal is not None:
        raise exceptions.PermissionDenied("CSRF check failed: send the X-CSRFToken header.", code="csrf_failed")


def json_body(request, schema: type[Schema]) -> Schema:
    """The request's JSON body (up to API_MAX_BODY_BYTES) checked against `schema`."""
    return validate(schema, json_data(request, settings.API_MAX_BODY_BYTES))


def json_data(request, limit: int):
    """The request's JSON body, up to `limit` bytes, as it came ({} if empty)."""
    if request.content_type != "application/json" and request.META.get("CONTENT_LENGTH", "0") != "0":
        raise exceptions.UnsupportedMediaType(request.content_type)
    return parse_json(request, limit)


def error_response(exc: exceptions.APIException) -> JsonResponse:
    """The API's error reply from an async view (DRF answers its own views)."""
    wait = getattr(exc, "wait", None)
    headers = {"Retry-After": str(max(1, round(wait)))} if wait else {}
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = CHALLENGE
    return JsonResponse(describe(exc), status=exc.status_code, headers=headers)


async def authorize(request, scope: str, session_permissions: tuple[str, ...] | None = None):
    """For async views: a staff session with the permissions for `scope` (or
    `session_permissions`), or an agent key holding `scope` (returned): the Authorization header's,
    or for a request without one from an address in KEYLESS_WRITES_FROM, the key-less one."""
    try:
        return await authorize_principal(authorization(request), request.auser, scope, session_permissions)
    except exceptions.NotAuthenticated:
        if not keyless(request):
            raise
        return _with_scope(await keyless_key_async(), scope)


async def authorize_principal(
    authorization: str,
    get_user: Callable[[], Awaitable],
    scope: str,
    session_permissions: tuple[str, ...] | None = None,
):
    """A staff user with the model permissions `scope` needs, or `session_permissions` when given
    (None is returned), or the agent key in the `authorization` header if it holds `scope`; DRF's
    authentication or permission exception otherwise. HTTP and websockets alike."""
    raw_key = key_from_header(authorization)
    key = await authenticate_key_async(raw_key) if raw_key else None
    if key is None:
        user = await get_user()
        if is_staff(user):
            needed = permissions_for(scope) if session_permissions is None else session_permissions
            if missing := [perm for perm in needed if not await user.ahas_perm(perm)]:
                raise lacks_permissions(missing)
            return None
        if user.is_authenticated:
            raise exceptions.PermissionDenied("Only staff may use this with a session.")
        raise exceptions.NotAuthenticated("Log in as staff or send an agent key.")
    return _with_scope(key, scope)


def authorization(request) -> str:
    """The request's Authorization header (from META: request.headers makes a dict of them all)."""
    return request.META.get("HTTP_AUTHORIZATION", "")


def remembered_principal(request, scope: str) -> tuple[AgentKey, KeyCheck] | None:
    """The request's agent key if this process knows it (remembered_key) and it holds `scope`,
    with the check a script must make before acting on it; None to authorize the request."""
    raw_key = key_from_header(authorization(request))
    known = remembered_key(raw_key) if raw_key else None
    return (_with_scope(known[0], scope), known[1]) if known else None


def _with_scope(key: AgentKey, scope: str) -> AgentKey:
    if not key.has_scope(scope):
        raise exceptions.PermissionDenied(f"This key lacks the '{scope}' scope.", code="missing_scope")
    return key


def bounded_int(params, name: str, default: int, low: int, high: int | None = None) -> int:
    """Query parameter `name` as an integer in [low, high]; a 400 naming it otherwise."""
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise exceptions.ValidationError({name: [f"Must be an integer {bounds}."]})
    return value
