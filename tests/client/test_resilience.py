"""What the SDK guarantees when things go wrong: outages, kills, torn spools."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from operations.embedded_redis import free_port
from runs.models import Run, RunEvent
from tests.client.conftest import event_counts, stored_runs
from tests.services import ROOT, asgi_server

AGENT = Path(__file__).with_name("agent_process.py")


def test_runs_recorded_while_the_server_is_down_arrive_exactly_once(server_env, make_client):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client = make_client(url)
    senders = []  # the thread of each request the SDK made
    client.sender.http.event_hooks["request"] = [lambda request: senders.append(threading.current_thread())]
    with asgi_server(server_env, port=port):
        for index in range(300):
            with client.track_run("alpha", "outage", run_id=f"run-{index:04d}") as ctx:
                ctx.log_event("a")
                ctx.log_event("b")
    # the server is down now; the agent keeps working
    for index in range(300, 1000):
        with client.track_run("alpha", "outage", run_id=f"run-{index:04d}") as ctx:
            ctx.log_event("a")
            ctx.log_event("b")
    assert client.flush(timeout=1) is False
    assert senders and set(senders) == {client.sender}  # recording never waited on the network: only the sender sends
    with asgi_server(server_env, port=port):
        assert client.flush(timeout=60)
    runs = stored_runs()
    assert sorted(runs) == [f"run-{i:04d}" for i in range(1000)]
    assert all(run.status == "success" for run in runs.values())
    assert Run.objects.count() == 1000
    assert event_counts() == {f"run-{i:04d}": 2 for i in range(1000)}
    assert client.get_stats()["failed_requests"] > 0


@pytest.fixture
def agent_env(live_asgi, agent_key, tmp_path) -> dict[str, str]:
    """The environment of an agent process (agent_process.py) that sends to the live server."""
    return {
        **os.environ,
        "TELEMETRY_API_URL": live_asgi,
        "TELEMETRY_API_KEY": agent_key,
        "TELEMETRY_SPOOL_DIR": str(tmp_path / "spool"),
    }


def test_an_agent_killed_mid_stream_loses_nothing_it_accepted(agent_env):
    agent = subprocess.Popen(
        [sys.executable, str(AGENT), "record", "100000"], cwd=ROOT, env=agent_env, stdout=subprocess.PIPE, text=True
    )
    finished = []
    for line in agent.stdout:
        finished.append(line.strip())
        if len(finished) == 400:
            break
    agent.send_signal(signal.SIGKILL)
    agent.wait()
    finished += [line.strip() for line in agent.stdout.read().splitlines()]
    assert agent.returncode == -signal.SIGKILL  # killed mid-stream, not ended by itself
    assert len(finished) >= 400
    restarted = subprocess.run(
        [sys.executable, str(AGENT), "flush"], cwd=ROOT, env=agent_env, capture_output=True, text=True, timeout=120
    )
    assert restarted.returncode == 0, restarted.stderr
    runs = stored_runs()
    counts = event_counts()
    assert Run.objects.count() == len(runs)  # no run stored twice
    assert RunEvent.objects.count() == sum(counts.values())
    for run_id in finished:  # every run the agent finished before the kill arrived whole
        assert runs[run_id].status == "success", run_id
        assert counts.get(run_id) == 3, run_id


def test_a_torn_spool_line_is_skipped(live_asgi, make_client, tmp_path, sdk_logs):
    offline = make_client(None)
    for index in range(3):
        with offline.track_run("alpha", "torn", run_id=f"before-{index}"):
            pass
    offline.close()
    segment = max((tmp_path / "spool" / "slot-0").glob("*.ndjson"))
    with open(segment, "ab") as handle:
        handle.write(b'{"kind":"run","event_id":"half-writ')  # the process died inside a write
    online = make_client(live_asgi)
    with online.track_run("alpha", "torn", run_id="after"):
        pass
    assert online.flush(timeout=10)
    assert sorted(stored_runs()) == ["after", "before-0", "before-1", "before-2"]
    assert "skipping a torn record" in sdk_logs.text


def test_an_agent_that_just_exits_has_its_records_delivered_at_exit(agent_env):
    agent = subprocess.run(
        [sys.executable, str(AGENT), "exit", "50"], cwd=ROOT, env=agent_env, capture_output=True, text=True, timeout=60
    )
    assert agent.returncode == 0, agent.stderr
    assert sorted(stored_runs()) == [f"exit-{i:06d}" for i in range(50)]
    assert event_counts() == {f"exit-{i:06d}": 1 for i in range(50)}


def test_a_full_spool_refuses_new_records_and_keeps_the_accepted_ones(live_asgi, make_client, sdk_logs):
    offline = make_client(None, spool_max_bytes=4000)
    run_ids = []
    for index in range(40):
        run_ids.append(offline.start_run("alpha", "full", run_id=f"full-{index:02d}"))
    stats = offline.get_stats()
    assert stats["dropped"] > 0 and stats["accepted"] + stats["dropped"] == 40
    assert "the spool is full" in sdk_logs.text
    offline.close()
    online = make_client(live_asgi)
    assert online.flush(timeout=10)
    assert sorted(stored_runs()) == run_ids[: stats["accepted"]]
