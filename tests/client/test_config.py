"""The SDK's configuration: what TelemetryConfig.problems() reports, and the environment variables
from_env() reads besides TELEMETRY_API_URL, TELEMETRY_API_KEY and TELEMETRY_SPOOL_DIR."""

from pathlib import Path

from telemetry_client import TelemetryClient, TelemetryConfig

from runs.models import Run


def test_problems_name_what_is_missing_or_wrong(tmp_path):
    assert TelemetryConfig(api_url=None, spool_dir=tmp_path).problems() == [
        f"TELEMETRY_API_URL is not set: records stay in the local spool ({tmp_path})"
    ]
    no_scheme = TelemetryConfig(api_url="telemetry.example:8000", api_key="k", spool_dir=tmp_path)
    assert no_scheme.problems() == [
        "TELEMETRY_API_URL 'telemetry.example:8000' is not an http(s) URL: records stay in the local spool"
    ]
    assert no_scheme.api_url is None  # the client spools instead of sending there
    assert TelemetryConfig(api_url="https://telemetry.example", spool_dir=tmp_path).problems() == [
        "TELEMETRY_API_KEY is not set: the server will refuse the records, which stay in the spool"
    ]
    assert TelemetryConfig(api_url="https://telemetry.example", api_key="k", spool_dir=tmp_path).problems() == []


def test_a_client_warns_of_its_problems_and_keeps_recording(tmp_path, sdk_logs):
    client = TelemetryClient(TelemetryConfig(api_url="ftp://telemetry.example", api_key="k", spool_dir=tmp_path))
    with client.track_run("alpha", "misconfigured"):
        pass
    client.close(timeout=0)
    assert "telemetry: TELEMETRY_API_URL 'ftp://telemetry.example' is not an http(s) URL" in sdk_logs.text
    assert client.get_stats()["accepted"] == 2 and client.get_stats()["failed_requests"] == 0  # spooled, not sent


def test_the_spool_limit_exit_wait_and_state_home_come_from_the_environment(monkeypatch, tmp_path, sdk_logs):
    for name in ("TELEMETRY_SPOOL_DIR", "TELEMETRY_SPOOL_MAX_MB", "TELEMETRY_EXIT_FLUSH_SECONDS", "AGENT_OWNER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("TELEMETRY_SPOOL_MAX_MB", "0.5")
    monkeypatch.setenv("TELEMETRY_EXIT_FLUSH_SECONDS", "1.5")
    config = TelemetryConfig.from_env()
    assert config.spool_dir == Path(tmp_path / "state" / "telemetry-client")
    assert (config.spool_max_bytes, config.exit_flush_timeout) == (512 * 1024, 1.5)

    monkeypatch.setenv("TELEMETRY_SPOOL_MAX_MB", "lots")
    assert TelemetryConfig.from_env().spool_max_bytes == 256 * 1024 * 1024
    assert "TELEMETRY_SPOOL_MAX_MB='lots' is not a number; using 256" in sdk_logs.text


def test_agent_owner_from_the_environment_is_stored_with_each_run(live_asgi, agent_key, monkeypatch, tmp_path):
    monkeypatch.setenv("TELEMETRY_API_URL", live_asgi)
    monkeypatch.setenv("TELEMETRY_API_KEY", agent_key)
    monkeypatch.setenv("TELEMETRY_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("AGENT_OWNER", "team-search")
    client = TelemetryClient()
    with client.track_run("alpha", "owned", run_id="owned-1"):
        pass
    assert client.flush(timeout=30)
    client.close()
    assert Run.objects.get(run_id="owned-1").agent_owner == "team-search"
