"""Scale-out: two web processes and two Celery workers (with one beat) on one PostgreSQL and one
Redis. An agent's heartbeat, signals and approval are served across processes: the waiter on one
web process, the sender or the reviewer on the other; the stale sweep records one transition
however many workers sweep."""

from __future__ import annotations

import re
import threading
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from django.contrib.auth.models import Permission
from django.db import connection

from approvals.models import ApprovalRequest
from coordination.models import Agent
from telemetry_site import celery_app
from tests.conftest import make_key
from tests.services import asgi_server, celery_processes, held_waits, wait_until_held

pytestmark = pytest.mark.django_db(transaction=True)

FAST = {"STALE_SWEEP_SECONDS": "1", "REGISTRY_SYNC_SECONDS": "1", "APPROVAL_SWEEP_SECONDS": "1"}
PLAIN_HTTP_COOKIES = {"SESSION_COOKIE_SECURE": "false", "CSRF_COOKIE_SECURE": "false"}  # the reviewer's httpx keeps them


@pytest.fixture
def postgres(transactional_db):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite takes one writer at a time: the scale-out deployment runs on PostgreSQL")


def call(base: str, key: str, method: str, path: str, body: dict | None = None) -> dict | list:
    response = httpx.request(method, f"{base}/api/v1/{path}", json=body, headers={"Authorization": f"Api-Key {key}"}, timeout=40)
    assert response.status_code in (200, 201), response.text
    return response.json()


def in_background(base: str, log: Path, key: str, path: str, body: dict, channel: str) -> tuple[threading.Thread, dict]:
    """A long-held POST in a thread, returned once the server (writing `log`) holds its wait on
    the wake-up `channel`; the dict gets its JSON answer."""
    answer: dict = {}
    before = held_waits(log, channel)

    def run():
        answer["json"] = call(base, key, "POST", path, body)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_until_held(log, channel, before + 1)
    return thread, answer


def finished(thread: threading.Thread, answer: dict) -> dict:
    thread.join(timeout=25)
    # Woken by the other process, before its 30 s timeout.
    assert not thread.is_alive() and "json" in answer, "the wait did not answer"
    return answer["json"]


def wait_for(condition, seconds: float = 20):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.2)


def both_workers_answer() -> bool:
    nodes = {name.split("@")[0] for reply in celery_app.control.ping(timeout=1) for name in reply}
    return {"worker-a", "worker-b"} <= nodes


def sweeps_per_worker() -> dict[str, int]:
    """How many stale sweeps each worker that ran any has run."""
    stats = celery_app.control.inspect(timeout=2).stats() or {}
    done = {node.split("@")[0]: info["total"].get("coordination.tasks.sweep_stale_agents", 0) for node, info in stats.items()}
    return {node: count for node, count in done.items() if count}


def csrf_token(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


def log_in(session: httpx.Client, username: str, password: str) -> None:
    """Sign in on the admin's login form, with its CSRF token (the session keeps the cookies)."""
    form = session.get("/admin/login/")
    login = {"username": username, "password": password, "csrfmiddlewaretoken": csrf_token(form.text), "next": "/admin/"}
    assert session.post("/admin/login/", data=login).status_code == 302


def decide_in_admin(session: httpx.Client, request_id: str, decision: str, reason: str) -> None:
    """Open the request's page and press a decision button of its form."""
    pk = ApprovalRequest.objects.get(request_id=request_id).pk
    page = session.get(f"/admin/approvals/approvalrequest/{pk}/change/")
    assert page.status_code == 200 and 'id="decision-form"' in page.text
    form = {"csrfmiddlewaretoken": csrf_token(page.text), "decision": decision, "reason": reason}
    decided = session.post(f"/admin/approvals/approvalrequest/{pk}/decide/", data=form)
    assert decided.status_code == 302 and decided.headers["location"].endswith(f"/{pk}/change/"), decided.text


def test_two_web_processes_and_two_workers_serve_one_fleet(postgres, server_env, django_user_model, tmp_path):
    keys = {name: make_key(name)[1] for name in ("alpha", "beta", "gamma")}
    rita = django_user_model.objects.create_user("rita", password="pw", is_staff=True)
    rita.user_permissions.add(*Permission.objects.filter(codename__in=["decide_approvalrequest", "view_approvalrequest"]))
    env = {**server_env, **FAST, **PLAIN_HTTP_COOKIES}
    log_a, log_b = tmp_path / "web-a.log", tmp_path / "web-b.log"  # at DEBUG: the waits each holds
    with ExitStack() as stack:
        web_a = stack.enter_context(asgi_server({**env, "LOG_LEVEL": "DEBUG"}, log=log_a))
        web_b = stack.enter_context(asgi_server({**env, "LOG_LEVEL": "DEBUG"}, log=log_b))
        for name in ("worker-a", "worker-b"):  # celery's CLI reads --hostname from CELERY_WORKER_HOSTNAME
            stack.enter_context(celery_processes({**env, "CELERY_WORKER_HOSTNAME": f"{name}@%h"}, beat=False))
        stack.enter_context(celery_processes(env, worker=False))
        wait_for(both_workers_answer, 60)

        # Heartbeat: beats on A, B answers with them, a worker's sync moves the registry row.
        call(web_a, keys["alpha"], "POST", "agents/alpha/heartbeat/start", {"stale_after_seconds": 60})
        beat = call(web_a, keys["alpha"], "POST", "agents/alpha/heartbeat", {"status": "running", "current_task": "t1"})
        state = call(web_b, keys["alpha"], "GET", "agents/alpha")
        assert (state["current_task"], state["alive"], state["last_beat"]) == ("t1", True, beat["last_beat"])
        assert "alpha" in [agent["agent_id"] for agent in call(web_b, keys["beta"], "GET", "agents/active")]
        last_beat = datetime.fromisoformat(beat["last_beat"])
        wait_for(lambda: Agent.objects.get(agent_id="alpha").last_seen_at >= last_beat)

        # A directed signal: alpha waits on A, beta sends on B.
        body = {"signal_type": "go", "timeout": 30}
        waiter = in_background(web_a, log_a, keys["alpha"], "signals/receive", body, "signals:alpha")
        sent = call(web_b, keys["beta"], "POST", "signals", {"signal_type": "go", "target_agent": "alpha", "payload": {"n": 1}})
        got = finished(*waiter)["signal"]
        assert (got["signal_id"], got["source_agent"], got["payload"]) == (sent["signal_id"], "beta", {"n": 1})

        # A broadcast from beta: alpha waits on A, gamma on B; each gets it once, on either process.
        body = {"signal_type": "all-stop", "timeout": 30}
        waiters = {"alpha": in_background(web_a, log_a, keys["alpha"], "signals/receive", body, "signals:alpha")}
        waiters["gamma"] = in_background(web_b, log_b, keys["gamma"], "signals/receive", body, "signals:gamma")
        broadcast = call(web_a, keys["beta"], "POST", "signals", {"signal_type": "all-stop"})
        for name, waiter in waiters.items():
            assert finished(*waiter)["signal"]["signal_id"] == broadcast["signal_id"]
            for web in (web_a, web_b):
                assert call(web, keys[name], "POST", "signals/receive", {**body, "timeout": 0})["signal"] is None

        # Approval: alpha waits on A, rita decides in the admin on B.
        with httpx.Client(base_url=web_b, timeout=20) as rita_on_b:
            log_in(rita_on_b, "rita", "pw")
            asked = call(web_a, keys["alpha"], "POST", "approvals", {"approval_type": "deploy", "timeout_seconds": 120})
            path, channel = f"approvals/{asked['request_id']}/wait", f"approvals:{asked['request_id']}"
            waiter = in_background(web_a, log_a, keys["alpha"], path, {"timeout": 30}, channel)
            decide_in_admin(rita_on_b, asked["request_id"], "approve", "ship it")
        answer = finished(*waiter)
        assert (answer["status"], answer["decision"]["approved"]) == ("approved", True)
        assert (answer["decision"]["responder"], answer["decision"]["reason"]) == ("rita", "ship it")

        # Stale sweep: alpha goes silent; beat's sweeps and a burst more, on both workers, record it once.
        call(web_b, keys["alpha"], "POST", "agents/alpha/heartbeat/start", {"stale_after_seconds": 2})
        time.sleep(2.2)
        for _ in range(6):
            celery_app.send_task("coordination.tasks.sweep_stale_agents")
        wait_for(lambda: Agent.objects.get(agent_id="alpha").stale_since is not None)
        time.sleep(3)  # more sweeps: still one transition
        stale_events = call(web_a, keys["beta"], "GET", "streams/agent.stale")
        assert [event["data"]["agent_id"] for event in stale_events] == ["alpha"]
        assert call(web_b, keys["beta"], "GET", "agents/alpha")["stale"] is True
        assert sorted(sweeps_per_worker()) == ["worker-a", "worker-b"]  # both workers swept
