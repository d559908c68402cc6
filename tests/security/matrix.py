"""The authorization matrix: every URL and websocket route, each method, and its expected outcome
for each persona (the admin's model pages drawn from ADMIN_MODELS)."""

from __future__ import annotations

import re
import uuid

from django.contrib import admin
from django.urls import URLPattern, URLResolver, get_resolver

from streaming.routing import websocket_urlpatterns
from tests.runs.factories import run_payload
from tests.security.world import PERSONAS, STREAM, one_good_span


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


def expected_for(persona: str, protocol: str = "http") -> dict[str, str]:
    index = PERSONAS.index(persona)
    return {
        f"{method} {route}": outcomes.split()[index]
        for route, methods in expected_outcomes().items()
        for method, (outcomes, _) in methods.items()
        if (route in websocket_routes()) == (protocol == "websocket")
    }
