"""The SDK's ApprovalGate against the real server: the public signatures, fail-closed answers."""

from __future__ import annotations

import inspect
import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from telemetry_client import ApprovalGate, ApprovalRequest, ApprovalResponse, TelemetryClient, TelemetryConfig

from approvals import services
from approvals.models import ApprovalRequest as StoredRequest
from tests.conftest import make_key


@pytest.fixture
def gate(live_asgi, transactional_db, tmp_path):
    key = make_key("deployer")[1]
    return ApprovalGate(TelemetryClient(TelemetryConfig(api_url=live_asgi, api_key=key, spool_dir=tmp_path)))


def test_signatures_are_the_public_ones():
    expected = {
        ApprovalGate.__init__: "(self, memory=None, agent_id=None)",
        ApprovalGate.request_approval: "(self, approval_type, context=None, timeout=None)",
        ApprovalGate.respond_to_approval: "(self, request_id, approved, responder, reason='')",
        ApprovalGate.get_pending_approvals: "(self, approval_type=None)",
        ApprovalGate.clear_expired_requests: "(self)",
    }
    for function, signature in expected.items():
        parameters = [p.replace(annotation=inspect.Parameter.empty) for p in inspect.signature(function).parameters.values()]
        assert str(inspect.Signature(parameters)) == signature, function.__qualname__


def test_request_approval_blocks_until_a_person_decides(gate, django_user_model):
    person = django_user_model.objects.create_user("ada")
    person.user_permissions.add(Permission.objects.get(codename="decide_approvalrequest"))
    answer = {}
    thread = threading.Thread(target=lambda: answer.update(response=gate.request_approval("deploy", {"v": 2}, timeout=60)))
    thread.start()
    deadline = time.monotonic() + 10
    while not (pending := gate.get_pending_approvals("deploy")):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert isinstance(pending[0], ApprovalRequest) and pending[0].context == {"v": 2} and pending[0].agent_id == "deployer"
    assert ApprovalRequest.from_dict(pending[0].to_dict()) == pending[0]
    assert gate.respond_to_approval(pending[0].request_id, True, "deployer") is False  # agents cannot decide
    services.decide(StoredRequest.objects.get(request_id=pending[0].request_id), False, person, "too risky")
    thread.join(timeout=10)
    response = answer["response"]
    assert isinstance(response, ApprovalResponse)
    assert (response.approved, response.responder, response.reason) == (False, "ada", "too risky")
    assert ApprovalResponse.from_dict(response.to_dict()) == response


def test_a_timed_out_request_is_expired_and_cleared(gate):
    response = gate.request_approval("deploy", timeout=0.5)
    assert response.approved is False and "Expired" in response.reason and response.responder == ""
    stored = StoredRequest.objects.get()
    # Expired at its expiry (by the agent's wait: no worker here), not held past it.
    assert stored.expires_at <= stored.decided_at < stored.created_at + timedelta(seconds=10)
    assert gate.get_pending_approvals() == []
    assert gate.clear_expired_requests() == 1
    assert gate.clear_expired_requests() == 0


def test_an_unreachable_server_never_approves(tmp_path):
    gate = ApprovalGate(TelemetryClient(TelemetryConfig(api_url="http://127.0.0.1:9", api_key="k", spool_dir=tmp_path)))
    response = gate.request_approval("deploy", timeout=1)
    assert response.approved is False and "could not be asked" in response.reason
    assert gate.get_pending_approvals() == [] and gate.clear_expired_requests() == 0
