"""The web server killed (SIGKILL) or stopped (SIGTERM) mid-ingest: no run half written, requests
in flight answered whole or refused, and the SDK then delivers the rest."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from datetime import datetime

import httpx
import pytest
from telemetry_client import TelemetryClient, TelemetryConfig

from operations.embedded_redis import free_port
from runs.models import Run, RunEvent
from tests.conftest import make_key
from tests.faults.ingest import run_item, wait_for
from tests.services import asgi_server

pytestmark = pytest.mark.django_db(transaction=True)


def stored_as_sent(run: Run, item: dict) -> bool:
    return (
        run.run_id == item["run_id"]
        and run.agent_name == item["agent_name"]
        and run.job_type == item["job_type"]
        and run.start_time == datetime.fromisoformat(item["start_time"])
        and run.status == item["status"]
        and run.items_discovered == item["items_discovered"]
        and run.input_summary == item["input_summary"]
    )


# --- 3. The web server killed mid-ingest ---------------------------------------------------------


def test_a_web_server_killed_mid_ingest_leaves_no_half_written_run_and_the_sdk_then_delivers_the_rest(server_env, tmp_path):
    key = make_key("alpha")[1]
    runs = 1000
    offline = TelemetryClient(TelemetryConfig(api_url=None, spool_dir=tmp_path / "spool"))
    for index in range(runs):
        with offline.track_run("alpha", "killed", run_id=f"kill-{index:04d}") as run:
            run.log_event("step", {"n": index})
            run.set_metrics(items_discovered=index, output_summary=f"output {index}")
    offline.close()

    def whole(run: Run) -> bool:
        """As the SDK sent it: started, or ended with every field of its end."""
        index = int(run.run_id.removeprefix("kill-"))
        started = (run.agent_name, run.job_type, run.trigger_type) == ("alpha", "killed", "cli")
        if run.status == "running":
            return started and (run.end_time, run.items_discovered, run.output_summary) == (None, 0, "")
        ended = (run.status, run.items_discovered, run.output_summary) == ("success", index, f"output {index}")
        return started and ended and run.end_time is not None

    port, started = free_port(), []
    config = TelemetryConfig(spool_dir=tmp_path / "spool", flush_interval=0.05)
    with asgi_server(server_env, port=port, started=started) as base:
        client = TelemetryClient(config, api_url=base, api_key=key)  # sends what the offline client spooled
        wait_for(lambda: Run.objects.exists(), every=0.01)
        started[0].kill()
        started[0].wait()
    after_kill = list(Run.objects.all())
    assert 0 < len(after_kill) < runs  # killed mid-ingest
    assert [run.run_id for run in after_kill if not whole(run)] == []

    with asgi_server(server_env, port=port):
        assert client.flush(timeout=90)
    client.close()
    assert Counter(Run.objects.values_list("run_id", flat=True)) == {f"kill-{index:04d}": 1 for index in range(runs)}
    assert all(whole(run) and run.status == "success" for run in Run.objects.all())
    assert Counter(RunEvent.objects.values_list("run__run_id", flat=True)) == {f"kill-{index:04d}": 1 for index in range(runs)}


def post_batch(http: httpx.Client, items: list[dict]) -> tuple[str, float, float]:
    """POST a batch of runs: its outcome, when it was sent and when the outcome came. The outcome
    is the status ("200", "503"...) of a whole answer, "refused" for no answer at all, "truncated"
    for one cut short, "hung" for none in time."""
    sent = []
    http.event_hooks["request"] = [lambda request: sent.append(time.monotonic())]
    try:
        with http.stream("POST", "/api/v1/ingest", json={"items": items}) as response:
            try:
                body = json.loads(response.read())
            except (httpx.HTTPError, ValueError):
                return "truncated", sent[0], time.monotonic()
    except httpx.TimeoutException:
        return "hung", sent[0] if sent else 0.0, time.monotonic()
    except httpx.TransportError:
        return "refused", sent[0] if sent else 0.0, time.monotonic()
    if response.status_code == 200 and body["total"] != len(items):
        return "truncated", sent[0], time.monotonic()
    return str(response.status_code), sent[0], time.monotonic()


def test_sigterm_mid_ingest_answers_the_requests_in_flight_whole_or_refuses_them(server_env):
    key = make_key("alpha")[1]
    started, outcomes = [], []  # outcomes: (items, outcome, sent_at, answered_at)
    answered = threading.Event()  # a batch was just answered: its thread sends the next one

    def send(number: int) -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Api-Key {key}"}, timeout=30) as http:
            for batch in range(100):
                items = [run_item(f"term-{number}-{batch}-{i}") for i in range(1000)]
                outcome, sent_at, answered_at = post_batch(http, items)
                outcomes.append((items, outcome, sent_at, answered_at))
                if outcome != "200":
                    return
                answered.set()

    with asgi_server(server_env, started=started) as base:
        senders = [threading.Thread(target=send, args=(number,)) for number in range(3)]
        for sender in senders:
            sender.start()
        wait_for(lambda: sum(outcome == "200" for _, outcome, _, _ in outcomes) >= 3, every=0.01)
        answered.clear()
        answered.wait(timeout=30)  # the other threads' batches are in the server (a thousand runs take a while)
        term_at = time.monotonic()
        started[0].send_signal(signal.SIGTERM)
        for sender in senders:
            sender.join(timeout=60)
        assert started[0].wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once shut down

    print("outcomes:", Counter(outcome for _, outcome, _, _ in outcomes))
    assert {outcome for _, outcome, _, _ in outcomes} <= {"200", "429", "refused"}  # never truncated, never a 5xx
    # A request in flight when SIGTERM came got its whole answer.
    assert any(outcome == "200" and sent_at < term_at < answered_at for _, outcome, sent_at, answered_at in outcomes)
    stored = Run.objects.in_bulk(field_name="event_id")
    for items, outcome, _, _ in outcomes:
        if outcome == "200":
            assert all(item["event_id"] in stored and stored_as_sent(stored[item["event_id"]], item) for item in items)
