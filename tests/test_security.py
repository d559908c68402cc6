"""Proof under fire, security: who may do what on every URL, keys never kept or logged in plain
text, revocation at once on every server, the websocket's authentication and Origin check, and
CSRF on the admin's actions. (`manage.py check --deploy` with production settings is
tests/test_server.py::test_check_deploy_passes_with_production_settings.)"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import websockets.sync.client as ws
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.core import signing
from django.db import connection
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule
from redis import Redis
from rest_framework.test import APIClient
from rest_framework.views import APIView
from telemetry_client import (
    ApprovalGate,
    CoordinationSignals,
    EventStreamer,
    HeartbeatCoordinator,
    TelemetryClient,
    TelemetryConfig,
)
from websockets.exceptions import ConnectionClosed, InvalidStatus

from alerts.models import Alert, AlertRule
from approvals import services as approvals
from approvals.models import ApprovalPolicy, ApprovalRequest
from chatops.models import SlackUser
from coordination import heartbeats, signals
from core import events, streams
from core.models import AgentKey
from core.redis import get_redis
from core.scopes import agent_default, known, permissions_for
from notifications.models import Delivery, NotificationChannel
from quality.models import ModelPrice
from runs.models import Run
from streaming.routing import websocket_urlpatterns
from telemetry_site.asgi import application
from tests.conftest import key_client, make_key
from tests.fakes import http_receiver
from tests.runs.factories import make_run, otlp_json, run_payload
from tests.services import ROOT, asgi_server, celery_processes
from tests.test_scale_out import PLAIN_HTTP_COOKIES, csrf_token, log_in

# The operator is staff with every view permission and no other; the reviewer, staff who may see and
# decide approval requests and nothing else (docs/operations.md, "Who may do what").
PERSONAS = ["anonymous", "key_a", "key_b", "reader", "operator", "reviewer", "superuser"]
READ_SCOPES = ["runs:read", "coordination:read", "approvals:read", "streams:read"]
MARKER = "for-alpha-eyes-only"  # in alpha's approval requests and signals: key B must never see it
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
STREAM = "custom.matrix"


# --- the authorization matrix ------------------------------------------------------------------


def routes(patterns=None, prefix: str = "") -> list[tuple[str, object]]:
    """Every URL pattern of the resolver, the admin's included, as (route, callback)."""
    found = []
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            found += routes(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            found.append((plain(prefix + str(pattern.pattern)), pattern.callback))
    return found


def plain(route: str) -> str:
    """The route with its parameters named without their converters: <str:event_id> is <event_id>."""
    return re.sub(r"<\w+:(\w+)>", r"<\1>", route)


def websocket_routes() -> list[str]:
    return [plain(str(pattern.pattern)) for pattern in websocket_urlpatterns if isinstance(pattern, URLPattern)]


@pytest.fixture
def world(db, django_user_model) -> SimpleNamespace:
    """Alpha's things (a run with an event, a trace, a heartbeat, signals, approval requests, a
    stream), a row of every model the admin shows, and the personas' credentials."""
    _, raw_a = make_key("alpha")
    _, raw_b = make_key("beta")
    _, raw_reader = make_key("reader", agents=["alpha"], scopes=READ_SCOPES)
    alpha = key_client(raw_a)
    run = run_payload("alpha")
    items = [
        {"kind": "run", **run},
        {"kind": "event", "run_event_id": run["event_id"], "event_type": "step", "payload": {"n": 1}},
        {"kind": "usage", "agent_name": "alpha", "model": "claude-sonnet-4", "input_tokens": 10, "run_event_id": run["event_id"]},
        {
            "kind": "feedback",
            "agent_name": "alpha",
            "workflow_name": "docs",
            "stage_name": "draft",
            "tier": "cheap",
            "quality_score": 0.9,
        },
        {"kind": "template_feedback", "agent_name": "alpha", "template_id": "faq-7", "good": True},
        {"kind": "metric", "agent_name": "alpha", "name": "pages_total", "metric_type": "counter", "value": 1},
    ]
    stored = alpha.post("/api/v1/ingest", items, format="json")
    assert stored.status_code == 200, stored.content
    spans = alpha.post("/v1/traces", one_good_span(TRACE_ID), format="json")
    assert spans.status_code == 200 and "rejectedSpans" not in spans.content.decode(), spans.content
    async_to_sync(heartbeats.beat)("alpha", {"status": "running"}, start=True)
    async_to_sync(signals.send)("ping", "beta", "alpha", {"secret": MARKER}, 600)
    asked = {name: approvals.create("alpha", "deploy", {"secret": MARKER}, 600) for name in ("ask", "cancel", "decide", "link")}
    events.publish_now([events.Event(STREAM, {"n": 1})])
    channel = NotificationChannel.objects.create(name="ops", kind="email", target="ops@example.com")
    Delivery.objects.create(channel=channel, topic="test", notification={"subject": "s"}, status="failed")
    rule = AlertRule.objects.create(name="silence", kind="agent_stale")
    details = {"agent_id": "alpha", "stale_since": rule.created_at.isoformat()}
    Alert.objects.create(rule=rule, subject="agent:alpha", summary="alpha is stale", details=details, opened_at=rule.created_at)
    Group.objects.create(name="operators")
    SlackUser.objects.create(slack_id="U0ROOT", user=django_user_model.objects.create_user("slack-linked"))
    ApprovalPolicy.objects.create(name="matrix", agent_glob="nobody-*")  # decides none of alpha's
    interval = IntervalSchedule.objects.create(every=10, period="seconds")
    PeriodicTask.objects.get_or_create(name="matrix", defaults={"task": "core.tasks.tick", "interval": interval})
    ClockedSchedule.objects.create(clocked_time=rule.created_at)
    CrontabSchedule.objects.create()
    SolarSchedule.objects.create(event="sunrise", latitude=1, longitude=1)
    ModelPrice.objects.get_or_create(
        model="claude-sonnet-4", defaults={"tier": "capable", "input_per_mtok": 3, "output_per_mtok": 15}
    )

    operator = django_user_model.objects.create_user("operator", is_staff=True)
    operator.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    reviewer = django_user_model.objects.create_user("reviewer", is_staff=True)
    reviewer.user_permissions.set(Permission.objects.filter(codename__in=["view_approvalrequest", "decide_approvalrequest"]))
    superuser = django_user_model.objects.create_superuser("root", password=None)
    return SimpleNamespace(
        keys={"key_a": raw_a, "key_b": raw_b, "reader": raw_reader},
        users={"operator": operator, "reviewer": reviewer, "superuser": superuser},
        run=Run.objects.get(event_id=run["event_id"]),
        approvals=asked,
        link=signing.dumps(asked["link"].request_id, salt=approvals.LINK_SALT),
    )


def one_good_span(trace_id: str, agent: str = "alpha") -> dict:
    export = otlp_json(trace_id, agent)
    del export["resourceSpans"][0]["scopeSpans"][0]["spans"][1]  # the malformed one
    return export


def client_of(persona: str, world: SimpleNamespace) -> APIClient:
    if persona in world.keys:
        return key_client(world.keys[persona])
    client = APIClient()
    if persona in world.users:
        client.force_login(world.users[persona])
    return client


def admin_object(model) -> object:
    found = model._default_manager.order_by("pk").first()
    assert found is not None, f"the matrix needs a row of {model.__name__}: make one in the world fixture"
    return found


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


def new_id() -> str:
    return str(uuid.uuid4())


# route: {method: (the outcome for each of PERSONAS, the request's query or body)}. Alpha's things
# are asked for, so key B's column is the cross-agent one. Outcomes: ok (2xx, or a redirect
# elsewhere than below), login (sent to the admin's login page), index (sent to the admin's
# index, as for an object that does not exist), an error status, items403 (a batch answered,
# every item refused as another agent's), leak (key B's reply shows alpha's approval context or
# signal payload); for the websocket, ok (it said ready) or the code it closed with.
#       anonymous  key A  key B  read-only key  operator  reviewer  superuser
MATRIX = {
    "": {"GET": ("index index index index index index index", {})},  # the front page: the admin
    "health": {"GET": ("ok ok ok ok ok ok ok", {})},
    "^api/v1/": {"GET": ("404 404 404 404 404 404 404", {})},  # an unknown API path, to anyone
    "metrics": {"GET": ("401 403 403 403 ok 403 ok", {})},  # keys need metrics:read
    "v1/traces": {"POST": ("401 ok items403 403 401 401 401", lambda w: one_good_span(uuid.uuid4().hex))},  # keys only
    "live/": {"GET": ("login login login login ok 403 ok", {})},
    "analytics/": {"GET": ("login login login login ok 403 ok", {})},
    "analytics/export.<fmt>": {"GET": ("login login login login ok 403 ok", {})},
    "traces/": {"GET": ("login login login login ok 403 ok", {})},
    "traces/<trace_id>/": {"GET": ("login login login login ok 403 ok", {})},
    "approvals/open/<token>/": {"GET": ("login login login login ok ok ok", {})},
    "chatops/slack/actions": {"POST": ("401 401 401 401 401 401 401", {})},  # Slack's signature, nobody's login or key
    "api/v1/runs": {
        "GET": ("401 ok ok ok ok 403 ok", {"agent_name": "alpha"}),
        "POST": ("401 ok 403 403 403 403 ok", lambda w: run_payload("alpha")),
    },
    "api/v1/runs/batch": {"POST": ("401 ok items403 403 403 403 ok", lambda w: [run_payload("alpha")])},
    "api/v1/runs/<event_id>": {
        "GET": ("401 ok ok ok ok 403 ok", {}),
        "PATCH": ("401 ok 403 403 403 403 ok", {"items_succeeded": 3}),
    },
    "api/v1/runs/<event_id>/associate-commit": {
        "POST": ("401 ok 403 403 403 403 ok", {"commit_hash": "abcdef1", "commit_source": "manual"}),
    },
    "api/v1/runs/<event_id>/events": {
        "GET": ("401 ok ok ok ok 403 ok", {}),
        "POST": ("401 ok 403 403 403 403 ok", {"event_type": "step", "payload": {"n": 2}}),
    },
    "api/v1/events/batch": {
        "POST": (
            "401 ok items403 403 403 403 ok",
            lambda w: [{"run_event_id": w.run.event_id, "event_type": "step", "event_id": new_id()}],
        ),
    },
    "api/v1/ingest": {"POST": ("401 ok items403 403 403 403 ok", lambda w: [{"kind": "run", **run_payload("alpha")}])},
    "api/v1/llm-usage": {
        "POST": (
            "401 ok items403 403 403 403 ok",
            lambda w: {"agent_name": "alpha", "model": "claude-sonnet-4", "event_id": new_id()},
        ),
    },
    "api/v1/metrics": {
        "POST": (
            "401 ok items403 403 403 403 ok",
            lambda w: {"agent_name": "alpha", "name": "pages_total", "metric_type": "counter", "value": 1, "event_id": new_id()},
        ),
    },
    "api/v1/metrics/query": {"GET": ("401 ok ok ok ok 403 ok", {"name": "pages_total"})},
    "api/v1/traces/<trace_id>": {"GET": ("401 ok ok ok ok 403 ok", {})},
    "api/v1/feedback": {
        "POST": (
            "401 ok items403 403 403 403 ok",
            lambda w: {
                "agent_name": "alpha",
                "workflow_name": "docs",
                "stage_name": "draft",
                "tier": "cheap",
                "quality_score": 1,
                "event_id": new_id(),
            },
        ),
    },
    "api/v1/feedback/stats": {"GET": ("401 ok ok ok ok 403 ok", {"workflow_name": "docs", "stage_name": "draft"})},
    "api/v1/feedback/recommendation": {
        "GET": ("401 ok ok ok ok 403 ok", {"workflow_name": "docs", "stage_name": "draft", "current_tier": "cheap"}),
    },
    "api/v1/feedback/templates": {
        "POST": (
            "401 ok items403 403 403 403 ok",
            lambda w: {"agent_name": "alpha", "template_id": "faq-7", "good": True, "event_id": new_id()},
        ),
    },
    "api/v1/feedback/templates/confidence": {"GET": ("401 ok ok ok ok 403 ok", {"template_id": "faq-7"})},
    "api/v1/reports/<name>": {"GET": ("401 ok ok ok ok 403 ok", {})},
    "api/v1/agents/active": {"GET": ("401 ok ok ok ok 403 ok", {})},
    "api/v1/agents/stale": {"GET": ("401 ok ok ok ok 403 ok", {})},
    "api/v1/agents/<agent_id>/heartbeat/start": {"POST": ("401 ok 403 403 403 403 ok", {"display_name": "Alpha"})},
    "api/v1/agents/<agent_id>/heartbeat": {"POST": ("401 ok 403 403 403 403 ok", {"status": "running", "progress": 0.5})},
    "api/v1/agents/<agent_id>/heartbeat/stop": {"POST": ("401 ok 403 403 403 403 ok", {"final_status": "completed"})},
    "api/v1/agents/<agent_id>": {"GET": ("401 ok ok ok ok 403 ok", {})},  # agents' states are no secret
    "api/v1/signals": {
        "GET": ("401 ok 403 ok ok 403 ok", {"agent_id": "alpha"}),
        "POST": ("401 ok 403 403 403 403 ok", {"signal_type": "ping", "source_agent": "alpha", "target_agent": "beta"}),
        "DELETE": ("401 ok 403 403 403 403 ok", {"agent_id": "alpha"}),
    },
    "api/v1/signals/receive": {"POST": ("401 ok 403 403 403 403 ok", {"agent_id": "alpha", "consume": False})},
    "api/v1/approvals": {
        "GET": ("401 ok ok ok ok ok ok", {"agent_id": "alpha"}),  # key B gets its own (none), no leak
        "POST": ("401 ok 403 403 403 403 ok", {"approval_type": "deploy", "agent_id": "alpha"}),
    },
    "api/v1/approvals/clear-expired": {"POST": ("401 ok ok 403 403 403 ok", {})},  # a key clears its agents' only
    "api/v1/approvals/<request_id>": {"GET": ("401 ok 404 ok ok ok ok", {})},
    "api/v1/approvals/<request_id>/wait": {"POST": ("401 ok 404 403 403 403 ok", {"timeout": 0})},
    "api/v1/approvals/<request_id>/cancel": {"POST": ("401 ok 404 403 403 403 ok", {})},
    "api/v1/approvals/<request_id>/decide": {"POST": ("401 403 403 403 403 ok ok", {"approved": True, "reason": "fine"})},
    "api/v1/streams": {"GET": ("401 ok ok ok ok 403 ok", {})},
    "api/v1/streams/consume": {"GET": ("401 ok ok ok ok 403 ok", {"types": STREAM, "after": "0"})},
    "api/v1/^streams/(?P<event_type>[A-Za-z0-9_.:-]{1,100})$": {
        "GET": ("401 ok ok ok ok 403 ok", {}),
        "POST": ("401 ok ok 403 403 403 ok", {"data": {"n": 2}}),
        "DELETE": ("401 403 403 403 403 403 ok", {}),  # streams:admin
    },
    "api/v1/^streams/(?P<event_type>[A-Za-z0-9_.:-]{1,100})/info$": {"GET": ("401 ok ok ok ok 403 ok", {})},
    "api/v1/^streams/(?P<event_type>[A-Za-z0-9_.:-]{1,100})/trim$": {"POST": ("401 403 403 403 403 403 ok", {"max_length": 100})},
    "api/schema/": {"GET": ("ok ok ok ok ok ok ok", {})},
    "api/docs/": {"GET": ("ok ok ok ok ok ok ok", {})},
    "ws/live/": {"GET": ("4401 ok ok ok ok 4403 ok", {})},
    # The admin, besides each model's own pages (ADMIN_MODELS below).
    "admin/": {"GET": ("login login login login ok ok ok", {}), "POST": ("login login login login ok ok ok", {})},
    "admin/login/": {"GET": ("ok ok ok ok index index index", {}), "POST": ("ok ok ok ok ok ok ok", {})},
    "admin/logout/": {"GET": ("index index index index 405 405 405", {}), "POST": ("index index index index ok ok ok", {})},
    "admin/password_change/": {"GET": ("login login login login ok ok ok", {}), "POST": ("login login login login ok ok ok", {})},
    "admin/password_change/done/": {
        "GET": ("login login login login ok ok ok", {}),
        "POST": ("login login login login 405 405 405", {}),
    },
    "admin/autocomplete/": {  # no model admin offers autocompletion
        "GET": ("login login login login 403 403 403", {}),
        "POST": ("login login login login 405 405 405", {}),
    },
    "admin/jsi18n/": {"GET": ("login login login login ok ok ok", {}), "POST": ("login login login login 405 405 405", {})},
    "admin/r/<content_type_id>/<object_id>/": {  # a run has no page outside the admin
        "GET": ("login login login login 404 404 404", {}),
        "POST": ("login login login login 404 404 404", {}),
    },
    "admin/auth/user/<id>/password/": {
        "GET": ("login login login login 403 403 ok", {}),
        "POST": ("login login login login 403 403 ok", {}),
    },
    "admin/coordination/agent/signals/": {
        "GET": ("login login login login ok 403 ok", {}),
        "POST": ("login login login login ok 403 ok", {}),
    },
    "admin/approvals/approvalrequest/<object_id>/decide/": {
        "GET": ("login login login login 405 405 405", {}),
        "POST": ("login login login login 403 ok ok", {"decision": "approve"}),
    },
    # an app's index (asked for runs')
    "admin/^(?P<app_label>auth|django_celery_beat|core|coordination|runs|quality|approvals|notifications|alerts|chatops)/$": {
        "GET": ("login login login login ok 404 ok", {}),
        "POST": ("login login login login ok 404 ok", {}),
    },
    "admin/(?P<url>.*)$": {
        "GET": ("login login login login 404 404 404", {}),
        "POST": ("login login login login 404 404 404", {}),
    },
}

# What the superuser may do to each model in the admin besides looking. The operator (staff with
# every view permission) may only look; the reviewer sees approval requests only.
ADMIN_MODELS = {
    "auth.group": {"add", "change", "delete"},
    "auth.user": {"add", "change", "delete"},
    "django_celery_beat.periodictask": {"add", "change", "delete"},
    "django_celery_beat.clockedschedule": {"add", "change", "delete"},
    "django_celery_beat.crontabschedule": {"add", "change", "delete"},
    "django_celery_beat.solarschedule": {"add", "change", "delete"},
    "django_celery_beat.intervalschedule": {"add", "change", "delete"},
    "core.agentkey": {"add", "change", "delete"},
    "notifications.notificationchannel": {"add", "change", "delete"},
    "notifications.delivery": {"delete"},  # the log of what was sent
    "coordination.agent": {"change", "delete"},  # agents register themselves
    "runs.run": {"change", "delete"},  # runs come from agents; the page edits what PATCH may set
    "runs.runevent": {"add", "change", "delete"},
    "quality.modelprice": {"add", "change", "delete"},
    "quality.llmusage": {"delete"},  # records, as the agents sent them
    "quality.feedbackentry": {"delete"},
    "quality.templatefeedback": {"delete"},
    "approvals.approvalrequest": set(),  # decided by the buttons only, kept for audit
    "approvals.approvalpolicy": {"add", "change", "delete"},
    "alerts.alertrule": {"add", "change", "delete"},
    "alerts.alert": {"delete"},
    "chatops.slackuser": {"add", "change", "delete"},
}


def admin_row(operator: str, reviewer: str, superuser: str) -> str:
    return f"login login login login {operator} {reviewer} {superuser}"


def admin_model_rows() -> dict[str, dict[str, tuple]]:
    """The expected outcomes on each model's changelist, add, history, delete and change pages
    (empty POSTs: an invalid form, a confirmation page, no action chosen)."""
    rows = {}
    for model in admin.site._registry:
        label = model._meta.label_lower
        assert label in ADMIN_MODELS, f"{label} is in the admin: say in ADMIN_MODELS what the superuser may do to it"
        doing = {
            ability: admin_row("403", "403", "ok" if ability in ADMIN_MODELS[label] else "403")
            for ability in ("add", "change", "delete")
        }
        looking = admin_row("ok", "ok" if label == "approvals.approvalrequest" else "403", "ok")
        base = f"admin/{model._meta.app_label}/{model._meta.model_name}/"
        rows[base] = {"GET": (looking, {}), "POST": (looking, {})}
        rows[f"{base}add/"] = {"GET": (doing["add"], {}), "POST": (doing["add"], {})}
        rows[f"{base}<object_id>/history/"] = {"GET": (looking, {}), "POST": (looking, {})}
        rows[f"{base}<object_id>/delete/"] = {"GET": (doing["delete"], {}), "POST": (doing["delete"], {})}
        rows[f"{base}<object_id>/change/"] = {"GET": (looking, {}), "POST": (doing["change"], {})}
        # The old URL of an object sends any staff member on to its change page.
        rows[f"{base}<object_id>/"] = {"GET": (admin_row("ok", "ok", "ok"), {}), "POST": (admin_row("ok", "ok", "ok"), {})}
    return rows


def expected_outcomes() -> dict[str, dict[str, tuple]]:
    return {**MATRIX, **admin_model_rows()}


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


def expected_for(persona: str, protocol: str = "http") -> dict[str, str]:
    index = PERSONAS.index(persona)
    return {
        f"{method} {route}": outcomes.split()[index]
        for route, methods in expected_outcomes().items()
        for method, (outcomes, _) in methods.items()
        if (route in websocket_routes()) == (protocol == "websocket")
    }


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


# --- the websocket: authentication and Origin --------------------------------------------------

OWN_ORIGIN = (b"origin", b"http://localhost:8000")
CROSS_SITE = (b"origin", b"https://evil.example")


def key_header(raw_key: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Api-Key {raw_key}".encode())]


def session_cookie(user) -> tuple[bytes, bytes]:
    browser = Client()
    browser.force_login(user)
    return (b"cookie", f"sessionid={browser.cookies['sessionid'].value}".encode())


def feed_outcome(path: str, headers: list[tuple[bytes, bytes]]) -> str:
    """ok when the live feed says it is ready; the close code when it refuses after the
    handshake; refused when it refuses the handshake itself."""

    async def run() -> str:
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await communicator.connect()
        if not connected:
            return "refused"
        message = json.loads(await communicator.receive_from(5))
        result = "ok" if message["type"] == "ready" else str((await communicator.receive_output(5))["code"])
        await communicator.disconnect()
        return result

    return async_to_sync(run)()


@pytest.mark.django_db(transaction=True)
def test_each_persona_gets_the_expected_outcome_on_every_websocket_route(world):
    for persona in PERSONAS:
        if persona in world.keys:
            headers = key_header(world.keys[persona])
        elif persona in world.users:
            headers = [session_cookie(world.users[persona]), OWN_ORIGIN]
        else:
            headers = []
        seen = {f"GET {route}": feed_outcome(f"/{route}", headers) for route in websocket_routes()}
        assert seen == expected_for(persona, "websocket"), persona


@pytest.mark.django_db(transaction=True)
def test_the_live_feed_refuses_bad_keys_keys_without_the_scope_sessions_of_non_staff_and_cross_site_pages(
    django_user_model,
):
    _, good = make_key("watcher", scopes=["streams:read"])
    _, writer = make_key("writer", scopes=["streams:write"])
    revoked, revoked_raw = make_key("old", scopes=["streams:read"])
    revoked.revoked = True
    revoked.save()
    operator = django_user_model.objects.create_user("operator", is_staff=True)
    operator.user_permissions.set(Permission.objects.filter(codename="view_eventstream"))
    staff = session_cookie(operator)
    unpermitted = session_cookie(django_user_model.objects.create_user("reviewer", is_staff=True))
    visitor = session_cookie(django_user_model.objects.create_user("visitor"))
    prefix, _, secret = good.partition(".")
    cases = {
        "no credentials": [],
        "an unknown key": key_header("nope." + secret),
        "the right prefix with a wrong secret": key_header(f"{prefix}.{secret[::-1]}"),
        "a revoked key": key_header(revoked_raw),
        "a key without streams:read": key_header(writer),
        "a session of a user who is not staff": [visitor, OWN_ORIGIN],
        "a staff session without the permission to read the streams": [unpermitted, OWN_ORIGIN],
        "a staff session from a cross-site page": [staff, CROSS_SITE],
        "a staff session from a sandboxed page": [staff, (b"origin", b"null")],
        "a key from a cross-site page": [*key_header(good), CROSS_SITE],
        "a staff session from our own page": [staff, OWN_ORIGIN],
        "a key from a program (no Origin)": key_header(good),
    }
    seen = {case: feed_outcome("/ws/live/", headers) for case, headers in cases.items()}
    assert seen == {
        "no credentials": "4401",
        "an unknown key": "4401",
        "the right prefix with a wrong secret": "4401",
        "a revoked key": "4401",
        "a key without streams:read": "4403",
        "a session of a user who is not staff": "4403",
        "a staff session without the permission to read the streams": "4403",
        "a staff session from a cross-site page": "refused",
        "a staff session from a sandboxed page": "refused",
        "a key from a cross-site page": "refused",
        "a staff session from our own page": "ok",
        "a key from a program (no Origin)": "ok",
    }


# --- the real server: the agent-key fast path and the websocket handshake -----------------------


def test_the_real_server_lets_the_key_alone_decide_on_its_fast_path_and_a_session_websocket_only_from_our_pages(
    server_env, django_user_model
):
    """Requests with a key skip the session, CSRF and auth middleware (telemetry_site/asgi.py): the
    key alone decides, and a superuser's session cookie sent along grants nothing. A websocket
    with that session is refused at the handshake from a cross-site page."""
    keys = {"a": make_key("alpha"), "b": make_key("beta"), "reader": make_key("reader", agents=["alpha"], scopes=READ_SCOPES)}
    headers = {name: {"Authorization": f"Api-Key {raw}"} for name, (_, raw) in keys.items()}
    run = make_run("alpha")
    asked = approvals.create("alpha", "deploy", {"secret": MARKER}, 600)
    django_user_model.objects.create_superuser("root", password="pw")
    with asgi_server({**server_env, **PLAIN_HTTP_COOKIES}) as base, httpx.Client(base_url=base) as browser:
        log_in(browser, "root", "pw")
        root = {"Cookie": f"sessionid={browser.cookies['sessionid']}"}
        b, decide = headers["b"], f"/api/v1/approvals/{asked.request_id}/decide"
        cases = {
            "B beats for alpha": ("POST", "/api/v1/agents/alpha/heartbeat", b, {}),
            "B waits on alpha's approval": ("POST", f"/api/v1/approvals/{asked.request_id}/wait", b, {"timeout": 0}),
            "B looks at alpha's signals": ("GET", "/api/v1/signals?agent_id=alpha", b, None),
            "B edits alpha's run": ("PATCH", f"/api/v1/runs/{run.event_id}", b, {"items_failed": 1}),
            "the read-only key records a run": ("POST", "/api/v1/runs", headers["reader"], run_payload("alpha")),
            "A decides its own approval": ("POST", decide, headers["a"], {"approved": True}),
            "B decides with root's session": ("POST", decide, {**b, **root}, {"approved": True}),
            "B beats for alpha with root's session": ("POST", "/api/v1/agents/alpha/heartbeat", {**b, **root}, {}),
            "a wrong key with root's session": ("GET", "/api/v1/runs", {"Authorization": "Api-Key nope.nope", **root}, None),
            "A beats for alpha": ("POST", "/api/v1/agents/alpha/heartbeat", headers["a"], {}),
        }
        seen, lean = {}, set()
        for case, (method, path, case_headers, body) in cases.items():
            response = httpx.request(method, f"{base}{path}", headers=case_headers, json=body)
            error = response.json()["error"]["code"] if response.status_code >= 400 else ""
            seen[case] = f"{response.status_code} {error}".strip()
            if "x-frame-options" not in response.headers:  # the lean handler has no clickjacking middleware
                lean.add(case)
        feed_url = base.replace("http", "ws") + "/ws/live/"
        with pytest.raises(InvalidStatus) as cross_site:
            ws.connect(feed_url, origin="https://evil.example", additional_headers=root, open_timeout=10)
        with ws.connect(feed_url, origin=base, additional_headers=root, open_timeout=10) as feed:
            assert json.loads(feed.recv(10))["type"] == "ready"
    assert seen == {
        "B beats for alpha": "403 agent_forbidden",
        "B waits on alpha's approval": "404 not_found",
        "B looks at alpha's signals": "403 agent_forbidden",
        "B edits alpha's run": "403 agent_forbidden",
        "the read-only key records a run": "403 missing_scope",
        "A decides its own approval": "403 agents_cannot_decide",
        "B decides with root's session": "403 agents_cannot_decide",
        "B beats for alpha with root's session": "403 agent_forbidden",
        "a wrong key with root's session": "401 invalid_key",
        "A beats for alpha": "200",
    }
    assert lean == set(cases), "every request with a key took the fast path"
    assert ApprovalRequest.objects.get(pk=asked.pk).status == "pending"
    assert cross_site.value.response.status_code == 403


# --- keys never kept or logged in plain text ----------------------------------------------------


def as_text(value) -> str:
    return bytes(value).decode("latin-1") if isinstance(value, bytes | memoryview) else str(value)


def database_text() -> str:
    """Every column of every row of every table, one line a row, in a stable order."""
    lines = []
    with connection.cursor() as cursor:
        for table in sorted(connection.introspection.table_names(cursor)):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 - our own table names
            lines += sorted(f"{table}: " + " | ".join(as_text(value) for value in row) for row in cursor.fetchall())
    return "\n".join(lines)


def session_payloads() -> str:
    """The stored sessions' data, unsigned (it is signed and compressed, not encrypted)."""
    texts = []
    for data in Session.objects.values_list("session_data", flat=True):
        payload = data.split(":")[0]
        raw = signing.b64_decode(payload.lstrip(".").encode())
        texts.append((zlib.decompress(raw) if payload.startswith(".") else raw).decode())
    return "\n".join(texts)


def redis_text() -> str:
    """Every entry of every Redis database, whatever its type, as text."""
    lines = []
    for db in get_redis().info("keyspace"):
        redis = Redis.from_url(os.environ["REDIS_URL"], db=int(db.removeprefix("db")))
        for name in redis.scan_iter(count=1000):
            lines.append(f"{name!r}: {redis_entry(redis, name)!r}")
    return "\n".join(lines)


def redis_entry(redis: Redis, name: bytes):
    kind = redis.type(name)
    if kind == b"string":
        return redis.get(name)
    if kind == b"hash":
        return redis.hgetall(name)
    if kind == b"stream":
        return redis.xrange(name)
    if kind == b"zset":
        return redis.zrange(name, 0, -1)
    if kind == b"set":
        return redis.smembers(name)
    return redis.lrange(name, 0, -1)


def add_key_in_admin(browser: httpx.Client, name: str) -> str:
    """A key made on the admin's add form; the raw key from the message that shows it once."""
    form = browser.get("/admin/core/agentkey/add/")
    fields = {
        "csrfmiddlewaretoken": csrf_token(form.text),
        "name": name,
        "agents": name,
        "scopes": agent_default(),
        "_save": "Save",
    }
    added = browser.post("/admin/core/agentkey/add/", data=fields, follow_redirects=True)
    return re.search(rf"The API key for {name} is: (\S+)\. ", added.text).group(1)


def key_form(key: AgentKey, **changes) -> dict:
    """The admin's change form of `key` as it stands, with `changes`."""
    fields = {"name": key.name, "agents": "\n".join(key.agents), "scopes": key.scopes, "expiry_date_0": "", "expiry_date_1": ""}
    return {**fields, "_save": "Save", **changes}


def revoke_in_admin(browser: httpx.Client, key: AgentKey) -> None:
    page = browser.get(f"/admin/core/agentkey/{quote(key.pk)}/change/")
    revoked = browser.post(page.url, data=key_form(key, revoked="on", csrfmiddlewaretoken=csrf_token(page.text)))
    assert revoked.status_code == 302, revoked.text


def delete_in_admin(browser: httpx.Client, key: AgentKey) -> None:
    page = browser.get(f"/admin/core/agentkey/{quote(key.pk)}/delete/")
    deleted = browser.post(page.url, data={"post": "yes", "csrfmiddlewaretoken": csrf_token(page.text)})
    assert deleted.status_code == 302, deleted.text


def use_through_the_sdk(base: str, raw_key: str, spool: Path) -> None:
    """What an agent does with its key: runs, events, usage, heartbeats, signals, an approval, a stream."""
    client = TelemetryClient(TelemetryConfig(api_url=base, api_key=raw_key, spool_dir=spool, flush_interval=0.05))
    with client.track_run("alpha", "translate") as run:
        run.log_event("step", {"n": 1})
    client.record_llm_usage("alpha", "claude-sonnet-4", input_tokens=10)
    assert client.flush(timeout=20)
    heartbeat = HeartbeatCoordinator(memory=client)
    heartbeat.start_heartbeat("alpha")
    heartbeat.beat(status="working", progress=0.5)
    CoordinationSignals(memory=client, agent_id="alpha").signal("go", target_agent="alpha-2")
    assert CoordinationSignals(memory=client, agent_id="alpha-2").wait_for_signal("go", timeout=10) is not None
    gate = ApprovalGate(memory=client, agent_id="alpha")
    answer = gate.request_approval("deploy", {"diff": "+1 line"}, timeout=1)
    assert not answer.approved
    assert not gate.respond_to_approval(answer.request_id, True, "alpha")  # refused: agents cannot decide
    assert EventStreamer(memory=client).publish_event("custom.keys", {"n": 1})
    heartbeat.stop_heartbeat()
    client.close(timeout=10)


def test_keys_are_kept_and_logged_only_as_prefix_and_hash_through_use_and_refusal(
    server_env, tmp_path, django_user_model, caplog
):
    """Keys made by the command and in the admin, used by the SDK, over HTTP and a websocket, and
    refused (wrong, unknown, malformed, revoked): afterwards no table, session, Redis entry, server
    or worker log (at DEBUG), SDK log or spool holds the secret part of any."""
    for sdk_logger in ("telemetry_client", "httpx", "httpcore"):  # the SDK and its HTTP client
        caplog.set_level(logging.DEBUG, logger=sdk_logger)
    env = {**server_env, **PLAIN_HTTP_COOKIES, "LOG_LEVEL": "DEBUG"}
    logs = {"server log": tmp_path / "server.log", "worker log": tmp_path / "worker.log"}
    made = subprocess.run(
        [sys.executable, "manage.py", "create_agent_key", "alpha", "--agents", "alpha", "alpha-*"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    command_key = made.stdout.strip()
    assert made.stdout == f"{command_key}\n" and command_key not in made.stderr  # printed once, and only there
    django_user_model.objects.create_superuser("root", password="pw")
    NotificationChannel.objects.create(name="reviewers", kind="email", target="ops@example.com", topics=["approval.requested"])
    with celery_processes(env, beat=False, log=logs["worker log"]), asgi_server(env, log=logs["server log"]) as base:
        feed_url = base.replace("http", "ws") + "/ws/live/"
        with httpx.Client(base_url=base) as browser:
            log_in(browser, "root", "pw")
            admin_key = add_key_in_admin(browser, "beta")
            use_through_the_sdk(base, command_key, tmp_path / "spool")
            beta = {"Authorization": f"Bearer {admin_key}"}
            traced = httpx.post(f"{base}/v1/traces", json=one_good_span(uuid.uuid4().hex, "beta"), headers=beta)
            assert traced.status_code == 200 and "rejectedSpans" not in traced.text
            assert httpx.get(f"{base}/metrics", headers=beta).status_code == 403  # no metrics:read
            with ws.connect(feed_url, additional_headers=beta, open_timeout=10) as feed:
                assert json.loads(feed.recv(10))["type"] == "ready"
            revoke_in_admin(browser, AgentKey.objects.get(name="beta"))
        prefix, _, secret = command_key.partition(".")
        refused = [
            beta,
            {"Authorization": f"Api-Key {prefix}.{secret[::-1]}"},
            {"Authorization": f"Api-Key nope.{secret}"},
            {"Authorization": "Api-Key"},
        ]
        assert [httpx.get(f"{base}/api/v1/runs", headers=headers).status_code for headers in refused] == [401] * 4
        with ws.connect(feed_url, additional_headers=beta, open_timeout=10) as feed:
            assert json.loads(feed.recv(10))["error"]["code"] == "invalid_key"
        revoked_sdk = TelemetryClient(TelemetryConfig(api_url=base, api_key=admin_key, spool_dir=tmp_path / "spool-beta"))
        revoked_sdk.start_run("beta", "translate")
        revoked_sdk.close(timeout=1)  # refused: the run stays in its spool
        for _ in range(300):  # the worker mails the reviewers about the approval request
            if Delivery.objects.filter(status="delivered").exists():
                break
            time.sleep(0.1)
    kept = {
        "database": database_text(),
        "sessions": session_payloads(),
        "redis": redis_text(),
        **{name: path.read_text(errors="replace") for name, path in logs.items()},
        "SDK log": caplog.text,
        "SDK spool": "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("spool*/**/*") if p.is_file()),
    }
    for raw in (command_key, admin_key):
        assert [name for name, text in kept.items() if raw.partition(".")[2] in text] == [], "a key in plain text"
    # The dumps hold what they should: what may be kept of the keys, and the traffic.
    for key in AgentKey.objects.all():
        assert key.prefix in kept["database"] and key.hashed_key in kept["database"]
    assert "Unauthorized: /api/v1/runs" in kept["server log"]
    assert '"POST /api/v1/ingest HTTP/1.1" 200' in kept["server log"]
    assert "Approval needed: deploy for alpha" in kept["worker log"]
    assert "401" in kept["SDK log"] and "invalid_key" in kept["SDK log"]
    assert AgentKey.objects.get(name="beta").last_used_at is not None


# --- revocation at once -------------------------------------------------------------------------


def test_a_key_revoked_or_deleted_in_the_admin_is_refused_at_once_by_every_server_and_its_websockets_close(
    server_env, django_user_model
):
    """Two web processes on one database and Redis, each having remembered the keys: the very next
    request after the admin's reply is refused on both, on the sync (DRF) and the async path,
    and the websocket the key holds open on the other process is closed."""
    env = {**server_env, **PLAIN_HTTP_COOKIES}
    keys = {name: make_key(name) for name in ("alpha", "gamma")}
    django_user_model.objects.create_superuser("root", password="pw")
    with asgi_server(env) as one, asgi_server(env) as two, httpx.Client(base_url=one) as browser:
        log_in(browser, "root", "pw")

        def answers(name: str) -> list[int]:
            headers = {"Authorization": f"Api-Key {keys[name][1]}"}
            return [
                response.status_code
                for base in (one, two)
                for response in (
                    httpx.get(f"{base}/api/v1/runs", headers=headers),
                    httpx.post(f"{base}/api/v1/agents/{name}/heartbeat", json={}, headers=headers),
                )
            ]

        for name, (key, raw) in keys.items():
            assert answers(name) == [200] * 4
            assert list(get_redis().scan_iter(match=f"*agent-key*{key.prefix}")), "the servers answer from the key cache"
            with ws.connect(
                two.replace("http", "ws") + "/ws/live/", additional_headers={"Authorization": f"Api-Key {raw}"}
            ) as feed:
                assert json.loads(feed.recv(10))["type"] == "ready"
                (revoke_in_admin if name == "alpha" else delete_in_admin)(browser, key)
                assert answers(name) == [401] * 4
                with pytest.raises(ConnectionClosed) as closed:
                    feed.recv(10)
                assert closed.value.rcvd.code == 4401, name
    assert AgentKey.objects.get(pk=keys["alpha"][0].pk).revoked
    assert not AgentKey.objects.filter(pk=keys["gamma"][0].pk).exists()


# --- CSRF on the admin's actions ----------------------------------------------------------------


def admin_actions(superuser) -> list[tuple[type, str]]:
    request = RequestFactory().get("/admin/")
    request.user = superuser
    return [(model, action) for model, model_admin in admin.site._registry.items() for action in model_admin.get_actions(request)]


def changelist(model) -> str:
    return f"/admin/{model._meta.app_label}/{model._meta.model_name}/"


def test_every_admin_action_without_the_csrf_token_is_refused_and_changes_nothing(world):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(world.users["superuser"])
    actions = admin_actions(world.users["superuser"])
    assert {"delete_selected", "approve_selected", "reject_selected", "retry", "evaluate_now"} <= {a for _, a in actions}
    before = database_text()
    for model, action in actions:
        selected = {"action": action, "_selected_action": [str(admin_object(model).pk)], "post": "yes", "apply": "1"}
        for token in ({}, {"csrfmiddlewaretoken": "x" * 64}):
            refused = browser.post(changelist(model), {**selected, **token})
            assert refused.status_code == 403, (model, action, token)
    assert database_text() == before, "a refused action changed something"


def test_admin_actions_with_the_csrf_token_do_their_work(world):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(world.users["superuser"])
    browser.get("/admin/")
    token = {"csrfmiddlewaretoken": browser.cookies["csrftoken"].value}
    alpha, beta = AgentKey.objects.get(name="alpha"), AgentKey.objects.get(name="beta")

    def act(model, action: str, *objects, **extra) -> None:
        picked = [str(obj.pk) for obj in objects]
        response = browser.post(changelist(model), {"action": action, "_selected_action": picked, **token, **extra})
        assert response.status_code in (200, 302), (action, response.status_code)

    change = f"/admin/core/agentkey/{quote(alpha.pk)}/change/"
    assert browser.post(change, key_form(alpha, revoked="on")).status_code == 403  # the change form too
    assert browser.post(change, key_form(alpha, revoked="on", **token)).status_code == 302
    act(AgentKey, "delete_selected", beta, post="yes")
    act(ApprovalRequest, "approve_selected", world.approvals["ask"], confirmed="yes")  # (the confirmation page's answer)
    act(ApprovalRequest, "reject_selected", world.approvals["cancel"], confirmed="yes")
    decide = f"/admin/approvals/approvalrequest/{world.approvals['decide'].pk}/decide/"
    assert browser.post(decide, {"decision": "approve"}).status_code == 403
    assert browser.post(decide, {"decision": "approve", **token}).status_code == 302
    act(Delivery, "retry", Delivery.objects.get())
    alert = Alert.objects.get()
    act(AlertRule, "evaluate_now", alert.rule)
    assert AgentKey.objects.get(pk=alpha.pk).revoked
    assert not AgentKey.objects.filter(pk=beta.pk).exists()
    statuses = {name: ApprovalRequest.objects.get(pk=asked.pk).status for name, asked in world.approvals.items()}
    assert statuses == {"ask": "approved", "cancel": "rejected", "decide": "approved", "link": "pending"}
    assert Delivery.objects.get().status == "pending"  # sent again
    assert Alert.objects.get(pk=alert.pk).closed_at is not None  # alpha is beating


# --- model permissions, not is_staff -------------------------------------------------------------

# The admin actions each staff persona is offered, as "app_label.model action"; it is refused every other.
ADMIN_ACTIONS = {
    "operator": {"runs.run export_csv", "runs.run export_json"},  # downloads: looking only
    "reviewer": {"approvals.approvalrequest approve_selected", "approvals.approvalrequest reject_selected"},
}


def test_every_scope_needs_model_permissions_that_exist(db):
    existing = {f"{p.content_type.app_label}.{p.codename}" for p in Permission.objects.select_related("content_type")}
    for scope in known():
        assert permissions_for(scope), scope
        assert set(permissions_for(scope)) <= existing, scope


def test_every_admin_action_declares_the_permission_it_needs():
    for model, model_admin in admin.site._registry.items():
        for func, name, _ in model_admin._get_base_actions():
            assert getattr(func, "allowed_permissions", ()), f"{model._meta.label_lower} {name}: give it permissions=[...]"


@pytest.mark.parametrize("persona", ["operator", "reviewer"])
def test_staff_personas_are_offered_only_the_admin_actions_their_permissions_grant_and_the_rest_change_nothing(
    persona, world, mailoutbox
):
    user = world.users[persona]
    offered = {f"{model._meta.label_lower} {action}" for model, action in admin_actions(user)}
    assert offered == ADMIN_ACTIONS[persona]
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    browser.get("/admin/")
    token = {"csrfmiddlewaretoken": browser.cookies["csrftoken"].value}
    before = database_text()
    for model, action in admin_actions(world.users["superuser"]):
        if f"{model._meta.label_lower} {action}" in offered:
            continue
        selected = {"action": action, "_selected_action": [str(admin_object(model).pk)], "post": "yes", **token}
        extra = {"apply": "1", "field": "status", "value": "cancelled"}  # bulk_edit's form, filled in
        response = browser.post(changelist(model), {**selected, **extra})
        # 403: the changelist is closed to this persona; 302: back to it, "No action selected"; 200:
        # the changelist drawn again (this persona has no action there at all).
        if response.status_code == 302:
            assert response["Location"] == changelist(model), (model, action)
        elif response.status_code == 200:
            assert "admin/change_list.html" in [t.name for t in response.templates], (model, action)
        else:
            assert response.status_code == 403, (model, action, response.status_code)
    assert database_text() == before, "an action refused to this persona changed something"
    assert mailoutbox == [], "a test notification was sent"


REVIEWER_PERMISSIONS = ["view_approvalrequest", "decide_approvalrequest"]
HOOK_TOKEN = "T0001/B0001/hook-token-s3cr3t"  # a Slack webhook's URL holds its token in the path


def test_on_the_real_server_a_reviewer_and_a_view_only_operator_write_nothing_and_nobody_sees_a_channels_secrets(
    server_env, django_user_model
):
    """Logged in with their passwords (CSRF token sent), a reviewer and an operator with every view
    permission try the API's writes as any agent, the runs admin's cancel and bulk edit, a test
    notification and the staff pages: each is refused and nothing stored changes (no run, stream,
    heartbeat, signal, approval request or channel; nothing reaches the webhook). Neither they nor
    the superuser see a channel's signing secret or its webhook's token after it was created; the
    reviewer still decides."""
    run = make_run("alpha")
    asked = approvals.create("alpha", "deploy", {}, 600)
    events.publish_now([events.Event(STREAM, {"n": n}) for n in range(3)])
    reviewer = django_user_model.objects.create_user("reviewer", password="pw", is_staff=True)
    reviewer.user_permissions.set(Permission.objects.filter(codename__in=REVIEWER_PERMISSIONS))
    operator = django_user_model.objects.create_user("operator", password="pw", is_staff=True)
    operator.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    django_user_model.objects.create_superuser("root", password="pw")
    with http_receiver() as (hook, received), asgi_server({**server_env, **PLAIN_HTTP_COOKIES}) as base:
        channel = NotificationChannel.objects.create(name="slack", kind="slack", target=f"{hook}/{HOOK_TOKEN}")
        browsers = {name: httpx.Client(base_url=base) for name in ("reviewer", "operator", "root")}
        for name, browser in browsers.items():
            log_in(browser, name, "pw")
        before = [line for line in database_text().splitlines() if not line.startswith("django_session:")]
        api_seen, seen, pages = {}, {}, {}
        for name in ("reviewer", "operator"):
            browser = browsers[name]
            csrf = browser.cookies["csrftoken"]
            api = {"headers": {"X-CSRFToken": csrf}}
            attempts = {
                "patch a run": browser.patch(f"/api/v1/runs/{run.event_id}", json={"items_failed": 9}, **api),
                "record a run as alpha": browser.post("/api/v1/runs", json=run_payload("alpha"), **api),
                "beat as alpha": browser.post("/api/v1/agents/alpha/heartbeat", json={}, **api),
                "signal as alpha": browser.post("/api/v1/signals", json={"signal_type": "go", "source_agent": "alpha"}, **api),
                "trim a stream": browser.post(f"/api/v1/streams/{STREAM}/trim", json={"max_length": 1}, **api),
                "delete a stream": browser.delete(f"/api/v1/streams/{STREAM}", **api),
                "ask as alpha": browser.post("/api/v1/approvals", json={"approval_type": "x", "agent_id": "alpha"}, **api),
                "cancel alpha's request": browser.post(f"/api/v1/approvals/{asked.request_id}/cancel", **api),
            }
            api_seen[name] = {case: f"{r.status_code} {r.json()['error']['code']}" for case, r in attempts.items()}
            picked = {"_selected_action": [str(run.pk)], "csrfmiddlewaretoken": csrf}
            admin_attempts = {
                "cancel runs": browser.post("/admin/runs/run/", data={**picked, "action": "mark_cancelled"}),
                "bulk edit runs": browser.post(
                    "/admin/runs/run/", data={**picked, "action": "bulk_edit", "apply": "1", "field": "status", "value": "failed"}
                ),
                "send a test": browser.post(
                    "/admin/notifications/notificationchannel/",
                    data={"_selected_action": [str(channel.pk)], "csrfmiddlewaretoken": csrf, "action": "send_test"},
                ),
            }
            seen[name] = {case: str(r.status_code) for case, r in admin_attempts.items()}
        for name in ("operator", "root"):
            pages[name] = [
                browsers[name].get(f"/admin/notifications/notificationchannel/{path}").text
                for path in ("", f"{channel.pk}/change/")
            ]
        after = [line for line in database_text().splitlines() if not line.startswith("django_session:")]
        redis_after = {
            "stream": streams.info(STREAM)["length"],
            "heartbeat": async_to_sync(heartbeats.status)("alpha"),
            "signals": async_to_sync(signals.pending)("alpha", ""),
        }
        for name in ("reviewer", "operator"):  # after: the analytics page brings the day's figures up to date
            seen[name] |= {path: str(browsers[name].get(path).status_code) for path in ("/analytics/", "/traces/", "/live/")}
        decided = browsers["reviewer"].post(
            f"/api/v1/approvals/{asked.request_id}/decide",
            json={"approved": True},
            headers={"X-CSRFToken": browsers["reviewer"].cookies["csrftoken"]},
        )
        for browser in browsers.values():
            browser.close()
    for name in ("reviewer", "operator"):
        assert api_seen[name] == dict.fromkeys(api_seen[name], "403 missing_permission"), name
    assert seen["reviewer"] == {
        "cancel runs": "403",  # the runs' changelist is closed to the reviewer
        "bulk edit runs": "403",
        "send a test": "403",
        "/analytics/": "403",
        "/traces/": "403",
        "/live/": "403",
    }
    assert seen["operator"] == {
        "cancel runs": "302",  # back to the changelist: "No action selected"
        "bulk edit runs": "302",
        "send a test": "200",  # the changelist drawn again: the operator has no action there
        "/analytics/": "200",
        "/traces/": "200",
        "/live/": "200",
    }
    assert after == before, "a refused request changed the database"
    assert redis_after == {"stream": 3, "heartbeat": None, "signals": []}
    assert received == [], "a test notification reached the webhook"
    for name, texts in pages.items():
        for text in texts:
            assert "hook-token-s3cr3t" not in text and channel.secret not in text, name
            assert "slack" in text
    assert decided.status_code == 200 and decided.json()["status"] == "approved"
