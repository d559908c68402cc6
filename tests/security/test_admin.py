"""The admin: its actions refused without the CSRF token and working with it, each action offered
only to staff whose model permissions grant it, and on the real server a reviewer and a view-only
operator write nothing while nobody sees a channel's secrets."""

from __future__ import annotations

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission
from django.test import Client, RequestFactory

from alerts.models import Alert, AlertRule
from approvals import services as approvals
from approvals.models import ApprovalRequest
from coordination import heartbeats, signals
from core import events, streams
from core.models import AgentKey
from core.scopes import known, permissions_for
from notifications.models import Delivery, NotificationChannel
from tests.fakes import http_receiver
from tests.runs.factories import make_run, run_payload
from tests.security.world import STREAM, admin_object, database_text, key_form
from tests.services import asgi_server
from tests.test_scale_out import PLAIN_HTTP_COOKIES, log_in

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
