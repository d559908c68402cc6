"""The admin as the approval UI: pending first, readable context, decisions by POST only, and the
permission matrix."""

from __future__ import annotations

import re

import httpx
import pytest
from django.contrib.auth.models import Permission

from approvals import services
from approvals.models import ApprovalRequest
from tests.conftest import make_key
from tests.services import asgi_server
from tests.test_scale_out import PLAIN_HTTP_COOKIES, csrf_token, log_in

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/approvals/approvalrequest/"


def change_url(request: ApprovalRequest) -> str:
    return f"{CHANGELIST}{request.pk}/change/"


@pytest.fixture
def requests(admin_user) -> list[ApprovalRequest]:
    """[decided, pending, pending]; the decided one is the newest."""
    pending = [
        services.create("alpha", "deploy", {"diff": "x" * 1000, "files": ["a.py", "b.py"]}, 600),
        services.create("beta", "spend", {"usd": 12.5}, 600),
    ]
    decided = services.create("alpha", "deploy", {}, 600)
    services.decide(decided, True, admin_user, "fine")
    return [decided, *pending]


@pytest.fixture
def viewer(client, django_user_model):
    """Staff who may look at approval requests but not decide them."""
    user = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_approvalrequest"))
    client.force_login(user)
    return client


def test_the_list_opens_on_the_pending_oldest_first_and_the_index_counts_them(admin_client, requests):
    opened = admin_client.get(CHANGELIST)
    assert [r.pk for r in opened.context["cl"].result_list] == [requests[1].pk, requests[2].pk]  # oldest first
    page = opened.content.decode()
    for column in ("column-action", "column-agent_id", "column-age", "column-time_left", "column-approvals"):
        assert column in page
    assert 'field-time_left">9\xa0minutes<' in page and "0 of 1" in page  # time left of a 600 s request; its approvals
    everything = admin_client.get(CHANGELIST, {"status__exact": "all"}).content.decode()
    assert everything.index(">pending<") < everything.index(">approved<")
    assert admin_client.get(CHANGELIST, {"status__exact": "approved"}).context["cl"].result_count == 1
    assert admin_client.get(CHANGELIST, {"age": "5m", "status__exact": "all"}).context["cl"].result_count == 3
    assert admin_client.get(CHANGELIST, {"age": "older"}).context["cl"].result_count == 0
    assert admin_client.get(CHANGELIST, {"agent_id__exact": "beta"}).context["cl"].result_count == 1
    index = admin_client.get("/admin/").content.decode()
    assert "<b>2</b> approval requests waiting for a decision" in index


def test_the_change_page_shows_the_context_folded_and_the_buttons(admin_client, requests):
    page = admin_client.get(change_url(requests[1])).content.decode()
    assert "<details><summary>" in page and "&quot;a.py&quot;" in page
    assert 'value="approve"' in page and 'value="reject"' in page
    decided_page = admin_client.get(change_url(requests[0])).content.decode()
    assert 'value="approve"' not in decided_page and "fine" in decided_page


def test_approve_with_a_reason_records_the_user(admin_client, requests):
    response = admin_client.post(f"{CHANGELIST}{requests[1].pk}/decide/", {"decision": "approve", "reason": "looks right"})
    assert response.status_code == 302
    stored = ApprovalRequest.objects.get(pk=requests[1].pk)
    assert (stored.status, stored.responder_name, stored.reason) == ("approved", "admin", "looks right")
    assert stored.decided_at is not None
    again = admin_client.post(f"{CHANGELIST}{requests[1].pk}/decide/", {"decision": "reject"}, follow=True)
    assert "already approved" in again.content.decode()
    assert ApprovalRequest.objects.get(pk=requests[1].pk).status == "approved"


def test_a_decision_with_a_reason_from_the_list_in_one_step(admin_client, requests):
    listing = admin_client.get(CHANGELIST, {"status__exact": "pending"}).content.decode()
    assert f'<form id="decide-{requests[1].pk}"' in listing and f'form="decide-{requests[1].pk}"' in listing
    assert f'<form id="decide-{requests[0].pk}"' not in listing  # decided already
    back = f"{CHANGELIST}?status__exact=pending"
    decided = admin_client.post(
        f"{CHANGELIST}{requests[2].pk}/decide/", {"decision": "reject", "reason": "too dear", "next": back}
    )
    assert (decided.status_code, decided["Location"]) == (302, back)
    stored = ApprovalRequest.objects.get(pk=requests[2].pk)
    assert (stored.status, stored.reason, stored.responder_name) == ("rejected", "too dear", "admin")
    elsewhere = admin_client.post(
        f"{CHANGELIST}{requests[1].pk}/decide/", {"decision": "approve", "next": "https://evil.example/admin/approvals/"}
    )
    assert elsewhere["Location"] == change_url(requests[1])


def test_get_changes_nothing_and_bad_decisions_are_refused(admin_client, requests):
    assert admin_client.get(f"{CHANGELIST}{requests[1].pk}/decide/").status_code == 405
    assert admin_client.post(f"{CHANGELIST}{requests[1].pk}/decide/", {"decision": "maybe"}).status_code == 400
    assert ApprovalRequest.objects.get(pk=requests[1].pk).status == "pending"


def test_bulk_actions_decide_only_pending_requests(admin_client, requests):
    selected, listing = [r.pk for r in requests], f"{CHANGELIST}?status__exact=all"
    asked = admin_client.post(listing, {"action": "reject_selected", "_selected_action": selected})
    assert "Reject these 2 pending request(s)?" in asked.content.decode()  # the decided one is not listed
    confirmed = {"action": "reject_selected", "confirmed": "yes", "_selected_action": selected}
    response = admin_client.post(listing, confirmed, follow=True)
    assert "Rejected 2 request(s). 1 were no longer pending." in response.content.decode()
    assert sorted(ApprovalRequest.objects.values_list("status", flat=True)) == ["approved", "rejected", "rejected"]


def test_without_the_permission_no_buttons_no_actions_and_403(viewer, requests):
    page = viewer.get(change_url(requests[1])).content.decode()
    assert page and 'value="approve"' not in page
    listing = viewer.get(CHANGELIST).content.decode()
    assert "approve_selected" not in listing and "reject_selected" not in listing
    assert 'id="decide-' not in listing and 'class="approve-row"' not in listing
    assert viewer.post(f"{CHANGELIST}{requests[1].pk}/decide/", {"decision": "approve"}).status_code == 403
    viewer.post(CHANGELIST, {"action": "approve_selected", "_selected_action": [requests[1].pk]})
    assert ApprovalRequest.objects.get(pk=requests[1].pk).status == "pending"


def test_the_decision_needs_the_csrf_token(requests, admin_user):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(f"{CHANGELIST}{requests[1].pk}/decide/", {"decision": "approve"}).status_code == 403
    assert ApprovalRequest.objects.get(pk=requests[1].pk).status == "pending"


def hidden_fields(html: str) -> list[tuple[str, str]]:
    """The hidden inputs of a page's form, as a browser submits them."""
    return re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html)


def test_on_the_real_server_bulk_approval_asks_first_and_decides_exactly_the_requests_it_listed(
    server_env, django_user_model, requests
):
    """A reviewer (view and decide, nothing else) logged in with their password selects all
    pending requests over a filter ("select all"); while they read the confirmation, an agent asks
    a new request and another withdraws one, through the API. Submitting the confirmation as the
    browser would decides the listed requests still pending, never the newcomer; meanwhile the
    agents are served (a heartbeat, a signal, the new request's wait)."""
    reviewer = django_user_model.objects.create_user("bulk-reviewer", password="pw", is_staff=True)
    reviewer.user_permissions.set(Permission.objects.filter(codename__in=["view_approvalrequest", "decide_approvalrequest"]))
    gamma = {"Authorization": f"Api-Key {make_key('gamma')[1]}"}
    beta = {"Authorization": f"Api-Key {make_key('beta')[1]}"}
    with asgi_server({**server_env, **PLAIN_HTTP_COOKIES}) as base, httpx.Client(base_url=base, timeout=30) as browser:
        log_in(browser, "bulk-reviewer", "pw")
        listing = browser.get(CHANGELIST, params={"status__exact": "pending"})
        assert listing.status_code == 200 and "approve_selected" in listing.text
        every = {"action": "approve_selected", "select_across": "1", "index": "0", "_selected_action": [str(requests[1].pk)]}
        confirmation = browser.post(
            f"{CHANGELIST}?status__exact=pending", data={**every, "csrfmiddlewaretoken": csrf_token(listing.text)}
        )
        page = confirmation.text
        assert confirmation.status_code == 200 and "Approve these 2 pending request(s)?" in page
        assert all(r.request_id in page for r in requests[1:]) and requests[0].request_id not in page
        assert sorted(ApprovalRequest.objects.values_list("status", flat=True)) == ["approved", "pending", "pending"]

        asked = httpx.post(f"{base}/api/v1/approvals", json={"approval_type": "deploy"}, headers=gamma)
        assert asked.status_code == 201
        withdrawn = httpx.post(f"{base}/api/v1/approvals/{requests[2].request_id}/cancel", headers=beta)
        assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "cancelled"
        assert httpx.post(f"{base}/api/v1/agents/gamma/heartbeat", json={}, headers=gamma).status_code == 200
        signal = {"signal_type": "go", "target_agent": "beta"}
        assert httpx.post(f"{base}/api/v1/signals", json=signal, headers=gamma).status_code == 201

        form = hidden_fields(page)
        assert ("select_across", "0") in form and ("confirmed", "yes") in form
        assert sorted(value for name, value in form if name == "_selected_action") == sorted(str(r.pk) for r in requests[1:])
        submitted: dict[str, list[str]] = {}
        for name, value in form:
            submitted.setdefault(name, []).append(value)
        done = browser.post(f"{CHANGELIST}?status__exact=pending", data=submitted, follow_redirects=True)
        # (the withdrawn one is no longer in the filtered list it was confirmed from)
        assert done.status_code == 200 and '<li class="info">Approved 1 request(s).</li>' in done.text
        waited = httpx.post(
            f"{base}/api/v1/approvals/{asked.json()['request_id']}/wait", json={"timeout": 0.2}, headers=gamma, timeout=30
        )
        assert waited.status_code == 200 and waited.json()["status"] == "pending"
    assert ApprovalRequest.objects.get(pk=requests[1].pk).status == "approved"
    assert ApprovalRequest.objects.get(pk=requests[1].pk).responder_name == "bulk-reviewer"
    assert ApprovalRequest.objects.get(pk=requests[2].pk).status == "cancelled"
    assert ApprovalRequest.objects.get(request_id=asked.json()["request_id"]).status == "pending"


def test_the_admin_index_shows_the_pending_count_only_to_whom_may_view_approval_requests(client, django_user_model, requests):
    """Any staff member opens the admin index; the count of pending requests is the approval
    requests' to show (approvals.view_approvalrequest)."""
    operator = django_user_model.objects.create_user("runs-operator", password="x", is_staff=True)
    operator.user_permissions.add(Permission.objects.get(codename="view_run"))
    client.force_login(operator)
    index = client.get("/admin/")
    assert index.status_code == 200
    assert 'id="pending-approvals"' not in index.content.decode() and "approval request" not in index.content.decode()
    viewer = django_user_model.objects.create_user("approvals-viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_approvalrequest"))
    client.force_login(viewer)
    assert "<b>2</b> approval requests waiting for a decision" in client.get("/admin/").content.decode()


def test_a_reviewer_sees_approvals_only_not_scheduling_nor_delivery_plumbing(client, django_user_model, requests):
    """A reviewer (view and decide approval requests) finds the approval requests on the admin
    index and nothing else: not agent keys, deliveries, notification channels, approval policies
    nor django-celery-beat's schedules, on the index or their pages."""
    reviewer = django_user_model.objects.create_user("index-reviewer", password="x", is_staff=True)
    reviewer.user_permissions.set(Permission.objects.filter(codename__in=["view_approvalrequest", "decide_approvalrequest"]))
    client.force_login(reviewer)
    index = client.get("/admin/")
    listed = {(app["app_label"], model["object_name"]) for app in index.context["app_list"] for model in app["models"]}
    assert listed == {("approvals", "ApprovalRequest")}
    page = index.content.decode()
    for hidden in ("Agent keys", "Deliveries", "Notification channels", "Periodic tasks", "Approval policies"):
        assert hidden not in page
    for url in ("/admin/core/agentkey/", "/admin/notifications/delivery/", "/admin/django_celery_beat/periodictask/"):
        assert client.get(url).status_code == 403
