"""The SDK against the real server: local-telemetry's API, delivered in the background."""

import pytest

from runs.models import Run, RunEvent
from tests.client.conftest import stored_runs


def test_track_run_success_records_the_run_its_events_and_metrics(live_asgi, make_client):
    client = make_client(live_asgi)
    with client.track_run("alpha", "process_files", product="docs") as ctx:
        ctx.log_event("start", {"input": "data.csv"})
        ctx.set_metrics(items_discovered=3, items_succeeded=2, items_failed=1)
    assert client.flush(timeout=10)
    run = Run.objects.get(run_id=ctx.run_id)
    assert (run.status, run.items_discovered, run.items_succeeded, run.items_failed) == ("success", 3, 2, 1)
    assert (run.agent_name, run.job_type, run.trigger_type, run.product) == ("alpha", "process_files", "cli", "docs")
    assert run.end_time is not None and run.duration_ms >= 0 and run.host
    assert list(run.events.values_list("event_type", "payload")) == [("start", {"input": "data.csv"})]


def test_track_run_failure_ends_failed_and_reraises_the_agents_exception(live_asgi, make_client):
    client = make_client(live_asgi)
    with pytest.raises(ValueError, match="bad row"), client.track_run("alpha", "parse") as ctx:
        raise ValueError("bad row 7")
    client.flush(timeout=10)
    run = Run.objects.get(run_id=ctx.run_id)
    assert run.status == "failed"
    assert run.error_summary == "ValueError: bad row 7"


def test_explicit_start_log_end_and_commit(live_asgi, make_client):
    client = make_client(live_asgi)
    run_id = client.start_run("alpha", "translate", run_id="custom-run-1", git_repo="https://github.com/acme/site")
    assert run_id == "custom-run-1"
    client.log_event(run_id, "checkpoint", {"step": 1})
    client.log_event(run_id, "checkpoint", {"step": 2})
    client.set_metrics(run_id, items_succeeded=10)
    client.end_run(run_id, status="partial", output_summary="10 of 12", items_failed=2)
    ok, message = client.associate_commit(run_id, "a1b2c3d4e5", "llm", "Claude <noreply@anthropic.com>")
    assert ok, message
    assert client.flush(timeout=10)
    run = Run.objects.get(run_id=run_id)
    assert (run.status, run.items_succeeded, run.items_failed, run.output_summary) == ("partial", 10, 2, "10 of 12")
    assert (run.git_commit_hash, run.git_commit_source) == ("a1b2c3d4e5", "llm")
    assert run.commit_url == "https://github.com/acme/site/commit/a1b2c3d4e5"
    assert run.events.count() == 2


def test_associate_commit_refuses_bad_input_and_unknown_runs(make_client):
    client = make_client(None)
    run_id = client.start_run("alpha", "x")
    assert client.associate_commit(run_id, "xyz", "llm")[0] is False
    assert client.associate_commit(run_id, "abcdef12", "robot")[0] is False
    assert client.associate_commit("no-such-run", "abcdef12", "ci") == (False, "[ERROR] Run ID not found: no-such-run")


def test_a_rejected_record_does_not_block_the_rest(live_asgi, make_client, tmp_path):
    client = make_client(live_asgi)
    with client.track_run("intruder", "x"):  # the key may not act as 'intruder'
        pass
    for index in range(5):
        with client.track_run("alpha", "ok", run_id=f"ok-{index}"):
            pass
    assert client.flush(timeout=10)
    assert sorted(stored_runs()) == [f"ok-{i}" for i in range(5)]
    assert client.get_stats()["rejected"] == 2  # the run and its end
    rejected = (tmp_path / "spool" / "rejected.ndjson").read_text()
    assert "agent_forbidden" in rejected and "intruder" in rejected


def test_the_sdk_never_raises_into_the_agent(make_client, sdk_logs):
    client = make_client(None)
    run_id = client.start_run("alpha", "x", no_such_field=1)
    client.log_event("no-such-run", "x")
    client.log_event(run_id, "odd payload", {"when": object()})
    client.set_metrics(run_id, items_failed=-1, unknown=2)
    client.end_run(run_id, status="exploded")
    client.end_run(run_id)
    assert client.get_stats()["accepted"] == 3
    assert "ignoring unknown field 'no_such_field'" in sdk_logs.text
    assert "items_failed=-1" in sdk_logs.text


def test_without_a_server_it_records_locally_and_a_later_client_delivers(live_asgi, make_client):
    offline = make_client(None)
    with offline.track_run("alpha", "offline", run_id="offline-1") as ctx:
        ctx.log_event("note")
    assert offline.get_stats()["pending_bytes"] > 0
    offline.close()
    online = make_client(live_asgi)
    assert online.flush(timeout=10)
    run = Run.objects.get(run_id="offline-1")
    assert run.status == "success" and RunEvent.objects.filter(run=run).count() == 1


def test_the_sdk_waits_out_429s_and_delivers_everything(server_env, make_client, sdk_logs):
    from tests.services import asgi_server

    with asgi_server({**server_env, "API_RATE_LIMIT": "4/second"}) as url:
        client = make_client(url, batch_size=5)
        for index in range(20):
            with client.track_run("alpha", "throttled", run_id=f"t-{index}"):
                pass
        assert client.flush(timeout=60)
    assert sorted(stored_runs()) == sorted(f"t-{i}" for i in range(20))
    assert client.get_stats()["failed_requests"] > 0  # it was throttled, and retried
    assert "429 Too Many Requests" in sdk_logs.text


def test_a_wrong_url_keeps_the_records_for_a_corrected_client(live_asgi, make_client, tmp_path):
    wrong = make_client(f"{live_asgi}/not-the-api")  # the server answers 404 to every request
    with wrong.track_run("alpha", "misrouted", run_id="kept"):
        pass
    assert wrong.flush(timeout=2) is False
    assert wrong.get_stats()["rejected"] == 0 and wrong.get_stats()["pending_bytes"] > 0
    assert not (tmp_path / "spool" / "rejected.ndjson").exists()
    wrong.close(timeout=0.1)
    fixed = make_client(live_asgi)
    assert fixed.flush(timeout=10)
    assert Run.objects.get(run_id="kept").status == "success"


def test_flush_with_nothing_to_send_returns_at_once(live_asgi, make_client):
    first = make_client(live_asgi)
    with first.track_run("alpha", "x"):
        pass
    assert first.flush(timeout=10)
    first.close()
    second = make_client(live_asgi)  # same spool dir: its old segment is all delivered
    assert second.flush(timeout=0)  # done before any time is given
    assert (second.get_stats()["delivered"], second.get_stats()["failed_requests"]) == (0, 0)  # nothing sent again


def test_restarts_leave_no_files_behind(live_asgi, make_client, tmp_path):
    for index in range(5):
        client = make_client(live_asgi)
        if index == 0:
            with client.track_run("alpha", "restart", run_id="only"):
                pass
        assert client.flush(timeout=10)
        client.close()
    assert len(list((tmp_path / "spool" / "slot-0").glob("*.ndjson"))) == 1  # the last client's segment
    assert list(stored_runs()) == ["only"]
