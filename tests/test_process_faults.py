"""Processes killed with SIGKILL at random points: a Celery worker in the middle of its sweeps, and
agents in the middle of spooling. What they did takes effect exactly once.

Celery runs with acks_late and without reject_on_worker_lost: a task whose pool process is killed
is acknowledged as failed, and one whose worker is killed stays unacknowledged in the broker until
its visibility timeout (an hour). Neither is run again soon: the next beat tick sweeps again, and
must finish what the killed sweep left without doing anything twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import psutil
import pytest

from alerts.models import Alert, AlertRule
from approvals import services as approvals
from approvals.models import ApprovalRequest, ApprovalStatus
from coordination.models import Agent
from core import streams
from notifications.models import Delivery, NotificationChannel
from operations.embedded_redis import free_port
from runs.models import Run, RunEvent
from tests.conftest import key_client, make_key
from tests.fakes import http_receiver
from tests.services import ROOT, asgi_server, celery_processes

FAST = {"STALE_SWEEP_SECONDS": "1", "APPROVAL_SWEEP_SECONDS": "1", "ALERT_EVALUATE_SECONDS": "1"}
FLEET = 300
AGENT = ROOT / "tests" / "client" / "agent_process.py"


def wait_until(condition, seconds: float = 30, every: float = 0.2) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(every)


def announced() -> int:
    """How many transitions the sweeps and the alert evaluations have announced so far."""
    return sum(streams.info(kind)["length"] for kind in ("agent.stale", "approval.expired", "alert.opened"))


def recorded() -> tuple[int, int, int]:
    """Stale agents, expired requests and alerts in the database."""
    stale = Agent.objects.filter(stale_since__isnull=False).count()
    return stale, ApprovalRequest.objects.filter(status=ApprovalStatus.EXPIRED).count(), Alert.objects.count()


def kill_mid_sweep(worker: psutil.Process, whole: bool, rng: random.Random) -> tuple[int, int, int]:
    """Once the sweeps make progress (or have finished), wait a random moment and SIGKILL the
    worker's pool processes, and the worker itself if `whole`. Returns what was recorded just after
    the kill (progress only grows: no more than at the kill)."""
    before = announced()
    wait_until(lambda: announced() > before or recorded() == (FLEET, FLEET, FLEET), seconds=60, every=0.01)
    time.sleep(rng.uniform(0, 0.1))
    for process in [*worker.children(), worker] if whole else worker.children():
        process.send_signal(signal.SIGKILL)
    return recorded()


@pytest.mark.django_db(transaction=True)
def test_workers_killed_mid_sweep_leave_each_transition_recorded_and_announced_once(server_env):
    rng = random.Random(7)
    env = {**server_env, **FAST}
    with http_receiver() as (url, _), celery_processes(env, worker=False):  # beat starts up meanwhile
        oncall = NotificationChannel.objects.create(name="oncall", kind="webhook", target=url, topics=["alert.opened"])
        AlertRule.objects.create(name="silent agents", kind="agent_stale").channels.set([oncall])
        fleet = key_client(make_key("fleet", agents=["fleet-*"])[1])
        for number in range(FLEET):
            start = fleet.post(f"/api/v1/agents/fleet-{number:03d}/heartbeat/start", {"stale_after_seconds": 1}, format="json")
            assert start.status_code == 200, start.content
        requests = [approvals.create(f"fleet-{n:03d}", "deploy", {"n": n}, timeout_seconds=1) for n in range(FLEET)]
        time.sleep(1.2)  # every agent silent past its threshold, every request past its timeout
        at_kills = []
        for _ in range(2):
            with celery_processes(env, beat=False) as [worker]:
                worker = psutil.Process(worker.pid)
                for whole in (False, False, True):  # its pool processes (it forks new ones) twice, then all of it
                    at_kills.append(kill_mid_sweep(worker, whole, rng))
        # A kill landed mid-sweep: something was recorded, not everything.
        assert any((0, 0, 0) != state != (FLEET, FLEET, FLEET) for state in at_kills), at_kills
        with celery_processes(env, beat=False):  # a worker left alone
            wait_until(lambda: recorded() == (FLEET, FLEET, FLEET), 60)
            time.sleep(2)  # more sweeps and evaluations: nothing twice
    fleet_ids = [f"fleet-{n:03d}" for n in range(FLEET)]
    assert Counter(e["data"]["agent_id"] for e in streams.recent("agent.stale", 10 * FLEET)) == dict.fromkeys(fleet_ids, 1)
    assert all(fleet.get(f"/api/v1/agents/{agent_id}").json()["stale"] for agent_id in fleet_ids)
    expiries = Counter(e["data"]["request_id"] for e in streams.recent("approval.expired", 10 * FLEET))
    assert expiries == {request.request_id: 1 for request in requests}
    assert Counter(Alert.objects.values_list("subject", flat=True)) == {f"agent:{agent_id}": 1 for agent_id in fleet_ids}
    deliveries = Counter(delivery.notification["data"]["alert_id"] for delivery in Delivery.objects.all())
    assert deliveries == dict.fromkeys(Alert.objects.values_list("pk", flat=True), 1)


# Agents in processes forked from one that has imported the SDK (a fresh interpreter takes ~0.3 s
# to import it: 200 of them would take a minute). For each number it reads, a child makes a client
# on the spool and records runs of 20 events, saying each step once the SDK call returned, until it
# is killed; the parent says the child's pid, and "dead" once it is reaped. Each line is one write
# to the pipe, so a kill never leaves half of one.
SPOOLING_AGENTS = """
import os, sys, time
from telemetry_client import TelemetryClient

def say(*words):
    os.write(1, " ".join(words).encode() + b"\\n")

def record(number):
    client = TelemetryClient()
    say("ready")
    for index in range(100):
        run_id = f"{number:03d}-{index:02d}"
        client.start_run("alpha", "spooled", run_id=run_id)
        say("start", run_id)
        for step in range(20):
            client.log_event(run_id, "step", {"n": step})
            say("event", run_id, str(step))
        client.end_run(run_id)
        say("end", run_id)
    time.sleep(30)  # never ends by itself: the test kills it

for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        try:
            record(int(line))
        finally:
            os._exit(0)
    say("pid", str(pid))
    os.waitpid(pid, 0)
    say("dead")
"""
KILLS = 200


def steps_of(number: int) -> list[str]:
    """Every step agent `number` would take if nobody killed it, in order."""
    return [
        step
        for index in range(100)
        for run_id in [f"{number:03d}-{index:02d}"]
        for step in [f"start {run_id}", *(f"event {run_id} {n}" for n in range(20)), f"end {run_id}"]
    ]


def kill_one(agents: subprocess.Popen, number: int, rng: random.Random) -> list[str]:
    """Start agent `number` and SIGKILL it at a random moment: one in four while it starts, the
    others while it records. Returns the steps it said it took."""
    agents.stdin.write(f"{number}\n")
    agents.stdin.flush()
    said, pid, ready = [], None, False
    while pid is None or (number % 4 and not ready):
        line = agents.stdout.readline()
        assert line, "the agents' process ended"
        if line.startswith("pid "):
            pid = int(line.split()[1])
        elif line == "ready\n":
            ready = True
        else:
            said.append(line.strip())
    time.sleep(rng.uniform(0, 0.06 if number % 4 == 0 else 0.008))
    os.kill(pid, signal.SIGKILL)
    while (line := agents.stdout.readline()) != "dead\n":
        assert line, "the agents' process ended"
        if line != "ready\n":
            said.append(line.strip())
    return said


def steps_held() -> Counter:
    """Each step the server holds, as the agents say them; counted twice if stored twice."""
    held = Counter()
    for run_id, status in Run.objects.values_list("run_id", "status"):
        held[f"start {run_id}"] += 1
        held[f"end {run_id}"] += status == "success"
    for run_id, payload in RunEvent.objects.values_list("run__run_id", "payload"):
        held[f"event {run_id} {payload['n']}"] += 1
    return +held


def test_agents_killed_200_times_while_spooling_have_exactly_what_they_accepted_delivered(server_env, tmp_path):
    rng = random.Random(11)
    port = free_port()
    agent_env = {
        **os.environ,
        "TELEMETRY_API_URL": f"http://127.0.0.1:{port}",  # nothing listens there yet: every record stays spooled
        "TELEMETRY_API_KEY": make_key("alpha")[1],
        "TELEMETRY_SPOOL_DIR": str(tmp_path / "spool"),
    }
    command = [sys.executable, "-c", SPOOLING_AGENTS]
    agents = subprocess.Popen(command, cwd=ROOT, env=agent_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    watchdog = threading.Timer(180, agents.kill)  # a stuck agent ends the test, not the suite
    watchdog.start()
    try:
        said = {number: kill_one(agents, number, rng) for number in range(KILLS)}
    finally:
        watchdog.cancel()
        agents.stdin.close()
        agents.wait(timeout=30)
    with asgi_server(server_env, port=port):
        replay = subprocess.run(
            [sys.executable, str(AGENT), "flush"], cwd=ROOT, env=agent_env, capture_output=True, text=True, timeout=120
        )
    assert replay.returncode == 0, replay.stderr
    assert not (tmp_path / "spool" / "rejected.ndjson").exists()
    held = steps_held()
    assert [step for step, times in held.items() if times > 1] == []
    for number in range(KILLS):
        steps, taken = steps_of(number), len(said[number])
        assert said[number] == steps[:taken]
        mine = {step for step in held if step.split()[1].startswith(f"{number:03d}-")}
        # every step it was told was accepted, and at most the one it was taking when killed
        assert mine in ({*steps[:taken]}, {*steps[: taken + 1]}), number
