"""The whole gate, as people use it: an agent blocks in the SDK, a reviewer logs in to the admin in
headless Chromium and decides, the agent unblocks with the decision. Real server, Redis, Celery
worker and beat."""

from __future__ import annotations

import threading
import time

import pytest
from telemetry_client import ApprovalGate, TelemetryClient, TelemetryConfig

from approvals.models import ApprovalRequest
from tests.conftest import logged_in_page, make_key, make_reviewer
from tests.services import asgi_server, celery_processes, wait_until_held

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def reviewer(django_user_model):
    return make_reviewer("rita")


@pytest.fixture
def agent_key() -> str:
    return make_key("deployer")[1]


def blocked_agent(gate: ApprovalGate, approval_type: str, context: dict, timeout: float) -> tuple[threading.Thread, dict]:
    answer: dict = {}

    def ask():
        answer["response"] = gate.request_approval(approval_type, context, timeout=timeout)

    thread = threading.Thread(target=ask)
    thread.start()
    return thread, answer


def test_a_reviewer_approves_and_rejects_in_the_admin_and_the_agent_unblocks(server_env, reviewer, agent_key, browser, tmp_path):
    with asgi_server(server_env) as base, celery_processes({**server_env, "APPROVAL_SWEEP_SECONDS": "1"}):
        gate = ApprovalGate(TelemetryClient(TelemetryConfig(api_url=base, api_key=agent_key, spool_dir=tmp_path / "spool")))
        page = logged_in_page(browser, f"{base}/admin/approvals/approvalrequest/", "rita")

        for decision, reason in (("approve", "ship it"), ("reject", "not on a Friday")):
            thread, answer = blocked_agent(gate, "deploy", {"service": "search", "diff": "+" * 800}, timeout=120)
            deadline = time.monotonic() + 30
            while not gate.get_pending_approvals():  # (no ORM here: Playwright's loop runs in this thread)
                assert time.monotonic() < deadline, "the request was not made"
                time.sleep(0.05)
            page.goto(f"{base}/admin/approvals/approvalrequest/")
            page.click("#result_list tbody tr:first-child th a")
            page.fill("#id_reason", reason)
            page.screenshot(path=str(tmp_path / f"{decision}.png"), full_page=True)
            page.click(f"#{decision}")
            page.locator(".messagelist").wait_for()
            thread.join(timeout=30)
            assert not thread.is_alive()  # woken by the decision, not by its 120 s timeout
            response = answer["response"]
            assert (response.approved, response.responder, response.reason) == (decision == "approve", "rita", reason)

        # A request nobody decides: the agent unblocks at its timeout with approved=False.
        response = gate.request_approval("deploy", {}, timeout=1)
        assert response.approved is False and "Expired" in response.reason


def test_beat_expires_requests_nobody_waits_for(server_env, agent_key):
    import httpx

    with asgi_server(server_env) as base, celery_processes({**server_env, "APPROVAL_SWEEP_SECONDS": "1"}):
        headers = {"Authorization": f"Api-Key {agent_key}"}
        asked = httpx.post(f"{base}/api/v1/approvals", json={"approval_type": "spend", "timeout_seconds": 1}, headers=headers)
        request_id = asked.json()["request_id"]
        deadline = time.monotonic() + 20
        while ApprovalRequest.objects.get(request_id=request_id).status != "expired":
            assert time.monotonic() < deadline, "beat did not expire the request"
            time.sleep(0.2)


def test_held_approval_waits_keep_no_database_connection(server_env, agent_key, tmp_path):
    """More agents waiting than the database pool has connections (PostgreSQL; SQLite has no
    pool): each wait reads the database before it sleeps, and the server still answers at once.
    The requests that ask, more than the pool holds too, each give their connection back."""
    import httpx

    headers = {"Authorization": f"Api-Key {agent_key}"}
    answers = []
    log = tmp_path / "web.log"
    env = {**server_env, "DATABASE_POOL_MAX_SIZE": "2", "LOG_LEVEL": "DEBUG"}
    with asgi_server(env, log=log) as base, httpx.Client(base_url=base, headers=headers) as http:
        asked = [http.post("/api/v1/approvals", json={"approval_type": "deploy"}).json()["request_id"] for _ in range(5)]

        def wait(request_id: str):
            url = f"{base}/api/v1/approvals/{request_id}/wait"
            answers.append(httpx.post(url, json={"timeout": 15}, headers=headers, timeout=30))

        waiters = [threading.Thread(target=wait, args=(request_id,)) for request_id in asked]
        for waiter in waiters:
            waiter.start()
        for request_id in asked:
            wait_until_held(log, f"approvals:{request_id}")
        listed = http.get("/api/v1/approvals", timeout=30)
        assert listed.status_code == 200 and len(listed.json()) == 5  # an exhausted pool waits 10 s, then 500
        for request_id in asked:
            assert http.post(f"/api/v1/approvals/{request_id}/cancel").status_code == 200
        for waiter in waiters:
            waiter.join(timeout=20)
    assert sorted(answer.json()["status"] for answer in answers) == ["cancelled"] * 5
