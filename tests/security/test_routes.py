"""The authorization matrix walked: every URL and method answers each of the seven personas as
tests/security/matrix.py expects, and the matrix names every route the server has."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.contenttypes.models import ContentType
from rest_framework.test import APIClient
from rest_framework.views import APIView

from runs.models import Run
from tests.conftest import key_client
from tests.security.matrix import expected_for, expected_outcomes, routes, websocket_routes
from tests.security.world import MARKER, PERSONAS, STREAM, TRACE_ID, admin_object


def client_of(persona: str, world: SimpleNamespace) -> APIClient:
    if persona in world.keys:
        return key_client(world.keys[persona])
    client = APIClient()
    if persona in world.users:
        client.force_login(world.users[persona])
    return client


def path_of(route: str, world: SimpleNamespace) -> str:
    """The route with real objects in its parameters, so the views get past their 404s."""
    approval = next((world.approvals[name] for name in ("cancel", "decide") if route.endswith(f"/{name}")), None)
    values = {
        "event_id": world.run.event_id,
        "trace_id": TRACE_ID,
        "agent_id": "alpha",
        "request_id": (approval or world.approvals["ask"]).request_id,
        "event_type": STREAM,
        "name": "show",
        "fmt": "csv",
        "token": world.link,
        "app_label": "runs",
        "url": "no-such-page/",
        "content_type_id": ContentType.objects.get_for_model(Run).pk,
        "id": world.users["superuser"].pk,
    }
    model = model_of_admin_route(route)
    if model is not None:
        values["object_id"] = quote(admin_object(model).pk)
    elif "object_id" in route:
        values["object_id"] = world.run.pk
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: str(values[m.group(1)]), route)
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m.group(1)]), path)
    return "/" + path.replace("^", "").replace("$", "")


def model_of_admin_route(route: str):
    for model in admin.site._registry:
        if route.startswith(f"admin/{model._meta.app_label}/{model._meta.model_name}/"):
            return model
    return None


def view_methods(callback) -> set[str] | None:
    """The HTTP methods an API view answers (None for views that do not say)."""
    endpoints = getattr(callback, "endpoints", [callback])  # core.api.by_method's, or the view
    methods = {method for endpoint in endpoints if hasattr(endpoint, "api") for method in endpoint.api.scopes}  # async_endpoint
    view_class = getattr(callback, "cls", None)
    if view_class is not None and issubclass(view_class, APIView):
        methods |= {m.upper() for m in view_class.http_method_names if m not in ("head", "options") and hasattr(view_class, m)}
    return methods or None


def outcome(response, persona: str) -> str:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    if persona == "key_b" and MARKER.encode() in content:
        return "leak"
    status = response.status_code
    if status == 302 and response["Location"].startswith("/admin/login/"):
        return "login"
    if status == 302 and response["Location"] == "/admin/":
        return "index"
    if response.get("Content-Type", "").startswith("application/json") and status == 200:
        body = json.loads(content)
        results = body.get("results") if isinstance(body, dict) else None
        if results and all(r["status"] == "rejected" and r["error"]["code"] == "agent_forbidden" for r in results):
            return "items403"
        refused_spans = body.get("partialSuccess", {}) if isinstance(body, dict) else {}  # OTLP's partial success
        if refused_spans:
            return "items403" if "may not act as" in refused_spans.get("errorMessage", "") else "partial"
    return "ok" if 200 <= status < 400 else str(status)


def walk(persona: str, world: SimpleNamespace) -> dict[str, str]:
    """Every HTTP route and method of the matrix, as `persona`: its outcome, by "METHOD route"."""
    client = client_of(persona, world)
    cases = [
        (route, method, request) for route, methods in expected_outcomes().items() for method, (_, request) in methods.items()
    ]
    # Last: what removes what other cases read, and what ends the session.
    cases.sort(key=lambda case: 2 if case[0] == "admin/logout/" else int(case[1] == "DELETE"))
    seen = {}
    for route, method, request in cases:
        if route in websocket_routes():
            continue
        data = request(world) if callable(request) else request
        path = path_of(route, world)
        if method == "DELETE":
            response = client.delete(path, QUERY_STRING="&".join(f"{name}={value}" for name, value in data.items()))
        elif method == "GET" or route.startswith("admin/"):
            response = getattr(client, method.lower())(path, data)
        else:
            response = getattr(client, method.lower())(path, data, format="json")
        seen[f"{method} {route}"] = outcome(response, persona)
    return seen


def test_every_url_method_and_websocket_route_has_an_expected_outcome_for_every_persona():
    expected = expected_outcomes()
    served = {route for route, _ in routes()} | set(websocket_routes())
    assert served - expected.keys() == set(), "URLs without an entry in the matrix"
    assert expected.keys() - served == set(), "entries of the matrix for URLs that are gone"
    for route, callback in routes():
        methods = view_methods(callback)
        assert methods is None or methods == set(expected[route]), f"{route} answers {methods}"
    assert all(len(outcomes.split()) == len(PERSONAS) for methods in expected.values() for outcomes, _ in methods.values())


@pytest.mark.parametrize("persona", PERSONAS)
def test_each_persona_gets_the_expected_outcome_on_every_url_and_method(persona, world):
    seen = walk(persona, world)
    expected = expected_for(persona)
    assert {case: got for case, got in seen.items() if got != expected[case]} == {}
    assert seen.keys() == expected.keys()
