"""Beat's export of spans and metrics over OTLP/HTTP, to a real local receiver (an HTTP server in
the test) that parses what it gets."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from operations.tasks import export_otlp
from tests.metrics.test_exports import POINTS
from tests.runs.factories import otlp_json
from traces import otlp, services
from traces.models import Span

pytestmark = pytest.mark.django_db


@pytest.fixture
def stored(agent):
    assert agent.post("/api/v1/metrics", POINTS, format="json").json()["inserted"] == 3


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


def test_otlp_export_sends_spans_once_and_metrics(stored, agent, collector, settings):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    services.ingest_spans(otlp.spans_of(otlp_json(trace_id, "alpha"), ids=lambda value: value), lambda agent: True)
    settings.OTLP_EXPORT_ENDPOINT, settings.OTLP_EXPORT_HEADERS = collector, {"Authorization": "Bearer t"}
    Collector.statuses = [503]  # the collector is down: nothing is marked sent
    with pytest.raises(Exception, match="503"):
        export_otlp()
    assert export_otlp() == {"spans": 1, "metrics": 3}
    settings.OTLP_EXPORT_HEADERS = {}
    assert export_otlp() == {"spans": 0, "metrics": 3}  # the span went once
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


def test_nothing_is_exported_without_an_endpoint(stored, collector, settings):
    settings.OTLP_EXPORT_ENDPOINT = ""
    assert export_otlp() == {} and Collector.received == []
