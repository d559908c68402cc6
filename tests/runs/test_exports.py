"""Exports: the metric series as rotated JSON files, and spans and metrics over OTLP/HTTP to a real
local receiver (an HTTP server in the test) that parses what it gets."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from runs import exporters, otlp, traces
from runs.models import Span
from tests.runs.factories import otlp_json

pytestmark = pytest.mark.django_db

POINTS = [
    {"event_id": "p1", "agent_name": "alpha", "name": "tool_calls_total", "metric_type": "counter", "value": 2,
     "labels": {"tool": "bash"}},
    {"event_id": "p2", "agent_name": "alpha", "name": "queue_size", "metric_type": "gauge", "value": 7, "labels": {}},
    {"event_id": "p3", "agent_name": "alpha", "name": "step_seconds", "metric_type": "histogram", "value": 0.3, "labels": {}},
]  # fmt: skip


@pytest.fixture
def stored(agent):
    assert agent.post("/api/v1/metrics", POINTS, format="json").json()["inserted"] == 3


def test_json_exports_rotate(stored, tmp_path):
    written = [exporters.export_json(tmp_path, max_files=3) for _ in range(5)]
    assert sorted(tmp_path.iterdir()) == written[2:]
    series = {item["name"]: item for item in json.loads(written[-1].read_text())["series"]}
    assert series["tool_calls_total"]["value"] == 2 and series["queue_size"]["value"] == 7
    assert series["step_seconds"]["buckets"]["0.5"] == 1 and series["step_seconds"]["count"] == 1


class Collector(BaseHTTPRequestHandler):
    """Keeps each request's path and body; answers with the next status of `statuses` (200 when none)."""

    received: list[tuple[str, bytes, str | None]] = []
    statuses: list[int] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            self.received.append((self.path, body, self.headers.get("Authorization")))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def collector():
    Collector.received, Collector.statuses = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_otlp_export_sends_spans_once_and_metrics(stored, agent, collector):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    traces.ingest_spans(otlp.spans_of(otlp_json(trace_id, "alpha"), ids=lambda value: value), lambda agent: True)
    Collector.statuses = [503]  # the collector is down: nothing is marked sent
    with pytest.raises(Exception, match="503"):
        exporters.export_otlp(collector, {"Authorization": "Bearer t"})
    assert exporters.export_otlp(collector, {"Authorization": "Bearer t"}) == {"spans": 1, "metrics": 3}
    assert exporters.export_otlp(collector, {}) == {"spans": 0, "metrics": 3}  # the span went once
    paths = [path for path, _, _ in Collector.received]
    assert paths == ["/v1/traces", "/v1/metrics", "/v1/metrics"] and Collector.received[0][2] == "Bearer t"
    sent = ExportTraceServiceRequest.FromString(Collector.received[0][1])
    (span,) = sent.resource_spans[0].scope_spans[0].spans
    assert (span.trace_id.hex(), span.name, span.kind, span.status.code) == (trace_id, "fetch", 3, 2)
    assert Span.objects.get().span_id == span.span_id.hex()
    metrics = {m.name: m for m in ExportMetricsServiceRequest.FromString(Collector.received[1][1]).resource_metrics[0]
               .scope_metrics[0].metrics}  # fmt: skip
    assert metrics["tool_calls_total"].sum.data_points[0].as_double == 2 and metrics["tool_calls_total"].sum.is_monotonic
    assert metrics["queue_size"].gauge.data_points[0].as_double == 7
    histogram = metrics["step_seconds"].histogram.data_points[0]
    assert histogram.count == 1 and sum(histogram.bucket_counts) == 1 and len(histogram.explicit_bounds) == 14
