"""Integers beyond OTLP's 64 bits, tried on the real server: the OTLP receiver refuses them (400,
nothing stored); one sent in a span item (JSON has no limit) is exported over OTLP as its decimal
text, and the export goes on with the spans after it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from operations.tasks import export_otlp
from tests.conftest import make_key
from tests.fakes import http_receiver
from tests.runs.factories import otlp_json
from traces.models import Span

pytestmark = pytest.mark.django_db(transaction=True)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def api(live_asgi):
    with httpx.Client(base_url=live_asgi, headers={"Authorization": f"Api-Key {make_key('alpha')[1]}"}) as client:
        yield client


def with_int(value: str) -> dict:
    """An OTLP/JSON export of alpha's span with one intValue attribute."""
    export = otlp_json(TRACE, "alpha")
    spans = export["resourceSpans"][0]["scopeSpans"][0]["spans"]
    del spans[1:]  # (the span with a bad id)
    spans[0]["attributes"] = [{"key": "n", "value": {"intValue": value}}]
    return export


def test_the_receiver_refuses_an_int_beyond_64_bits_and_stores_nothing(api):
    for value in (str(2**63), str(-(2**63) - 1)):
        refused = api.post("/v1/traces", json=with_int(value))
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid", refused.text
        assert "64-bit" in refused.json()["error"]["message"]
    assert not Span.objects.exists()
    assert api.post("/v1/traces", json=with_int(str(2**63 - 1))).status_code == 200
    assert Span.objects.get().attributes == {"n": 2**63 - 1}


def span_item(span_id: str, **attributes) -> dict:
    start = datetime.now(UTC)
    return {"kind": "span", "trace_id": TRACE, "span_id": span_id, "name": "step", "agent_name": "alpha",
            "start_time": start.isoformat(), "end_time": (start + timedelta(milliseconds=5)).isoformat(),
            "attributes": attributes}  # fmt: skip


def test_an_int_beyond_64_bits_is_exported_as_text_and_the_export_goes_on(api, settings):
    huge = {"huge": 2**70, "negative": -(2**64), "edge": 2**63 - 1, "small": -5}
    assert api.post("/api/v1/ingest", json=[span_item("00f067aa0ba902b7", **huge)]).json()["inserted"] == 1
    with http_receiver() as (url, received):
        settings.OTLP_EXPORT_ENDPOINT = url.removesuffix("/hook")
        assert export_otlp()["spans"] == 1
        assert api.post("/api/v1/ingest", json=[span_item("00f067aa0ba902b8", after=1)]).json()["inserted"] == 1
        assert export_otlp()["spans"] == 1  # the next one: the first did not stop the export
    traces = [ExportTraceServiceRequest.FromString(r["body"]) for r in received if r["path"] == "/v1/traces"]
    first, second = (request.resource_spans[0].scope_spans[0].spans[0] for request in traces)
    sent = {pair.key: pair.value for pair in first.attributes}
    assert (sent["huge"].string_value, sent["negative"].string_value) == (str(2**70), str(-(2**64)))
    assert (sent["edge"].int_value, sent["small"].int_value) == (2**63 - 1, -5)
    assert second.span_id.hex() == "00f067aa0ba902b8"
