"""The approvals API on the real database and Redis: asking, deciding once, expiry, who may do what."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection

from approvals import services
from approvals.models import ApprovalRequest
from core import streams
from tests.conftest import key_client, make_key

pytestmark = pytest.mark.django_db


def ask(client, approval_type="deploy", **fields) -> dict:
    response = client.post("/api/v1/approvals", {"approval_type": approval_type, **fields}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def approver(db, django_user_model):
    """A staff session holding the approve permission (CSRF enforced, token sent)."""
    from rest_framework.test import APIClient

    user = django_user_model.objects.create_user("ada", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="decide_approvalrequest"))
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/admin/")  # sets the CSRF cookie
    client.credentials(HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)
    return client


def test_an_agent_asks_and_sees_its_pending_request(agent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        asked = ask(agent, context={"diff": "+1 -1"}, timeout_seconds=120)
    assert (asked["agent_id"], asked["status"], asked["timeout_seconds"], asked["decision"]) == ("alpha", "pending", 120, None)
    assert [r["request_id"] for r in agent.get("/api/v1/approvals").json()] == [asked["request_id"]]
    assert agent.get("/api/v1/approvals", {"approval_type": "other"}).json() == []
    assert agent.get(f"/api/v1/approvals/{asked['request_id']}").json()["context"] == {"diff": "+1 -1"}
    assert [e["data"]["request_id"] for e in streams.recent("approval.requested", 5)] == [asked["request_id"]]


def test_a_person_decides_once_and_the_waiting_agent_gets_it(agent, approver):
    asked = ask(agent)
    decided = approver.post(f"/api/v1/approvals/{asked['request_id']}/decide", {"approved": True, "reason": "ok"}, format="json")
    assert decided.status_code == 200, decided.content
    decision = decided.json()["decision"]
    assert (decision["approved"], decision["responder"], decision["reason"]) == (True, "ada", "ok")
    again = approver.post(f"/api/v1/approvals/{asked['request_id']}/decide", {"approved": False}, format="json")
    assert again.status_code == 400
    waited = agent.post(f"/api/v1/approvals/{asked['request_id']}/wait", {"timeout": 5}, format="json").json()
    assert waited["status"] == "approved" and waited["decision"]["responder"] == "ada"
    assert agent.get("/api/v1/approvals").json() == []


def test_agents_and_people_without_the_permission_cannot_decide(agent, staff):
    asked = ask(agent)
    by_agent = agent.post(f"/api/v1/approvals/{asked['request_id']}/decide", {"approved": True}, format="json")
    assert by_agent.status_code == 403 and by_agent.json()["error"]["code"] == "agents_cannot_decide"
    staff.get("/admin/")
    staff.credentials(HTTP_X_CSRFTOKEN=staff.cookies["csrftoken"].value)
    by_staff = staff.post(f"/api/v1/approvals/{asked['request_id']}/decide", {"approved": True}, format="json")
    assert by_staff.status_code == 403
    assert ApprovalRequest.objects.get(request_id=asked["request_id"]).status == "pending"


def test_a_decision_without_the_csrf_token_is_refused(agent, approver):
    asked = ask(agent)
    approver.credentials()  # drop the token
    refused = approver.post(f"/api/v1/approvals/{asked['request_id']}/decide", {"approved": True}, format="json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    assert ApprovalRequest.objects.get(request_id=asked["request_id"]).status == "pending"


def test_another_agents_requests_are_invisible_and_cannot_be_asked_for(agent, other_agent):
    asked = ask(agent)
    assert other_agent.get(f"/api/v1/approvals/{asked['request_id']}").status_code == 404
    assert other_agent.post(f"/api/v1/approvals/{asked['request_id']}/wait", {"timeout": 0}, format="json").status_code == 404
    assert other_agent.get("/api/v1/approvals").json() == []
    forged = other_agent.post("/api/v1/approvals", {"approval_type": "deploy", "agent_id": "alpha"}, format="json")
    assert forged.status_code == 403
    assert list(ApprovalRequest.objects.values_list("request_id", flat=True)) == [asked["request_id"]]


@pytest.mark.django_db(transaction=True)
def test_two_reviewers_deciding_at_once_record_one_decision(django_user_model):
    request = services.create("alpha", "deploy", {}, 60)
    reviewers = [django_user_model.objects.create_user(f"r{n}") for n in range(6)]
    for reviewer in reviewers:
        reviewer.user_permissions.add(Permission.objects.get(codename="decide_approvalrequest"))
    results, start = {}, threading.Barrier(len(reviewers))

    def decide(user):
        start.wait()
        try:
            results[user.username] = services.decide(ApprovalRequest.objects.get(pk=request.pk), user.pk % 2 == 0, user)
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=(user,)) for user in reviewers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [name for name, won in results.items() if won]
    assert len(winners) == 1
    stored = ApprovalRequest.objects.get(pk=request.pk)
    assert stored.responder_name == winners[0]
    assert len(streams.recent("approval.decided", 10)) == 1


def test_a_request_past_its_timeout_expires_once_and_is_never_decided(agent, approver, django_capture_on_commit_callbacks):
    asked = ask(agent, timeout_seconds=0.5)
    time.sleep(0.6)
    assert agent.get("/api/v1/approvals").json() == []  # no longer waiting for anyone
    with django_capture_on_commit_callbacks(execute=True):
        assert services.expire_due() == 1
    assert services.expire_due() == 0
    stored = ApprovalRequest.objects.get(request_id=asked["request_id"])
    assert (stored.status, stored.approved) == ("expired", False) and "Expired" in stored.reason
    late = approver.post(f"/api/v1/approvals/{asked['request_id']}/decide", {"approved": True}, format="json")
    assert late.status_code == 400
    assert [e["data"]["status"] for e in streams.recent("approval.expired", 5)] == ["expired"]
    assert agent.post("/api/v1/approvals/clear-expired", format="json").json() == {"cleared": 1}
    assert not ApprovalRequest.objects.filter(request_id=asked["request_id"]).exists()


def test_a_wait_past_the_expiry_expires_the_request_itself(agent):
    asked = ask(agent, timeout_seconds=0.5)
    waited = agent.post(f"/api/v1/approvals/{asked['request_id']}/wait", {"timeout": 10}, format="json").json()
    assert waited["status"] == "expired" and waited["decision"]["approved"] is False
    assert "Expired" in waited["decision"]["reason"]
    stored = ApprovalRequest.objects.get(request_id=asked["request_id"])
    # Expired at its expiry, not when the wait's own 10 s would have ended it.
    assert stored.expires_at <= stored.decided_at < stored.created_at + timedelta(seconds=10)


def test_a_short_wait_returns_the_request_still_pending(agent):
    asked = ask(agent, timeout_seconds=60)
    waited = agent.post(f"/api/v1/approvals/{asked['request_id']}/wait", {"timeout": 0.2}, format="json").json()
    assert waited["status"] == "pending" and waited["decision"] is None


def test_an_agent_may_cancel_its_pending_request(agent):
    asked = ask(agent)
    cancelled = agent.post(f"/api/v1/approvals/{asked['request_id']}/cancel", format="json").json()
    assert cancelled["status"] == "cancelled" and cancelled["decision"]["approved"] is False
    decided_at = ApprovalRequest.objects.get().decided_at
    assert agent.post(f"/api/v1/approvals/{asked['request_id']}/cancel", format="json").status_code == 400
    assert (ApprovalRequest.objects.get().status, ApprovalRequest.objects.get().decided_at) == ("cancelled", decided_at)


def test_bad_requests_are_refused_with_the_field_named(agent):
    cases = [
        ({"approval_type": "two words"}, "approval_type"),
        ({"approval_type": "deploy", "timeout_seconds": -1}, "timeout_seconds"),
        ({"approval_type": "deploy", "context": "text"}, "context"),
        ({"approval_type": "deploy", "colour": 1}, "colour"),
    ]
    for body, field in cases:
        response = agent.post("/api/v1/approvals", body, format="json")
        assert response.status_code == 400 and field in response.json()["error"]["fields"], body
    assert agent.get("/api/v1/approvals", {"status": "maybe"}).status_code == 400
    assert not ApprovalRequest.objects.exists()


def test_a_read_only_key_cannot_ask(db):
    reader = key_client(make_key("alpha", scopes=["approvals:read"])[1])
    assert reader.post("/api/v1/approvals", {"approval_type": "deploy"}, format="json").status_code == 403
    assert not ApprovalRequest.objects.exists()
    assert reader.get("/api/v1/approvals").status_code == 200
