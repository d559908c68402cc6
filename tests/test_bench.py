"""A smoke test of the benchmarks: bench.ingest, the cheapest, with tiny sizes, so a change that
breaks the bench harness or a module shows in `make test`, not at the next `make bench`."""

import json
import subprocess
import sys

import pytest

from tests.services import ROOT

TINY_INGEST = """
import json
import bench.ingest as ingest
ingest.WORKERS, ingest.CONCURRENCY, ingest.SECONDS, ingest.RAW_ROWS = 1, 2, 0.3, 1000
result = ingest.run("sqlite")
print(ingest.report(result))
print(json.dumps(result))
"""


@pytest.mark.timeout(120)
def test_bench_ingest_runs_with_tiny_sizes():
    done = subprocess.run([sys.executable, "-c", TINY_INGEST], cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr
    *report, figures = done.stdout.strip().splitlines()
    result = json.loads(figures)
    assert report[0].startswith("runs ingest on sqlite (uvicorn x1, 2 connections")
    assert result["database"] == "sqlite"
    rates = ["raw_bulk_create_rows_s", "bare_drf_req_s", "single_post_req_s", "batch_rows_s"]
    rates += [f"{kind}_{clients}_req_s" for kind in ("single_post", "patch") for clients in (1, 2, 8)]
    assert all(result[name] > 0 for name in rates), result


def test_bench_sdk_decorator_overhead_measures_a_traced_no_op(tmp_path, monkeypatch):
    from telemetry_client import TelemetryClient, TelemetryConfig

    from bench import sdk

    monkeypatch.setattr(sdk, "CALLS", 300)
    client = TelemetryClient(TelemetryConfig(api_url=None, spool_dir=tmp_path))
    figures = sdk.decorator_overhead(client)
    client.close(timeout=0.1)
    assert figures["traced_us"] > figures["bare_us"] > 0
    assert figures["decorator_us"] == figures["traced_us"] - figures["span_us"]
