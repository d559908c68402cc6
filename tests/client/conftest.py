import logging

import pytest
from telemetry_client import TelemetryClient, TelemetryConfig, process

from runs.models import Run, RunEvent
from tests.conftest import make_key


@pytest.fixture
def agent_key(transactional_db) -> str:
    return make_key("alpha", agents=["alpha", "alpha-*"])[1]


@pytest.fixture
def make_client(tmp_path, agent_key):
    """TelemetryClient factory on a spool dir of this test; every client is closed afterwards."""
    clients = []

    def make(api_url: str | None, **settings) -> TelemetryClient:
        config = TelemetryConfig(api_url=api_url, api_key=agent_key, spool_dir=tmp_path / "spool", flush_interval=0.05)
        for name, value in settings.items():
            setattr(config, name, value)
        client = TelemetryClient(config)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close(timeout=5)


def stored_runs() -> dict[str, Run]:
    return {run.run_id: run for run in Run.objects.all()}


def event_counts() -> dict[str, int]:
    counts: dict[str, int] = {}
    for run_id in RunEvent.objects.values_list("run__run_id", flat=True):
        counts[run_id] = counts.get(run_id, 0) + 1
    return counts


@pytest.fixture(autouse=True)
def sdk_logs(caplog):
    caplog.set_level(logging.INFO, logger="telemetry_client")
    return caplog


@pytest.fixture(autouse=True)
def no_process_client(monkeypatch, tmp_path):
    """Each test starts without the process's client (and its one warning about a foreign
    `memory`), whose default spool is in the test's folder; the one a test made is closed after it."""
    monkeypatch.setenv("TELEMETRY_SPOOL_DIR", str(tmp_path / "process-spool"))
    for name in ("TELEMETRY_ENABLED", "METRICS_API_URL", "METRICS_API_TOKEN", "METRICS_API_ENABLED"):
        monkeypatch.delenv(name, raising=False)
    yield
    if process._client is not None:
        process._client.close(timeout=5)
    process._client, process._warned_foreign = None, False
