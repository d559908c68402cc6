"""Bad values: NUL characters in bodies, ids and queries, OTLP exports of the wrong shape, bad
queries and paths, and times and ids a database could not take."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection

from coordination import heartbeats
from coordination.models import Agent
from tests.bad_input.limits import assert_refused, assert_unchanged
from tests.runs.factories import run_payload

pytestmark = pytest.mark.django_db(transaction=True)


NUL = {
    "in a run's text": ("POST", "/api/v1/runs", run_payload("alpha", job_type="a\x00b"), 400),
    "in a key of a run's JSON": ("POST", "/api/v1/runs", run_payload("alpha", metrics_json={"a\x00": 1}), 400),
    "in JSON held in a string": ("POST", "/api/v1/runs", run_payload("alpha", metrics_json='{"a": "\\u0000"}'), 400),
    "in a batch item": ("POST", "/api/v1/ingest", [{"kind": "run", **run_payload("alpha", git_branch="\x00")}], 400),
    "in an approval": ("POST", "/api/v1/approvals", {"approval_type": "d", "agent_id": "alpha", "context": {"n": "\x00"}}, 400),
    "in a signal": ("POST", "/api/v1/signals", {"signal_type": "go", "source_agent": "alpha", "payload": {"n": ["\x00"]}}, 400),
    "in a run's id": ("GET", "/api/v1/runs/a%00b", None, 404),
    "in a run's id to patch": ("PATCH", "/api/v1/runs/a%00b", {"status": "success"}, 404),
    "in an agent's id": ("POST", "/api/v1/agents/a%00b/heartbeat/start", {}, 404),
    "in an approval's id": ("GET", "/api/v1/approvals/a%00b", None, 404),
    "in a trace's id": ("GET", "/api/v1/traces/a%00b", None, 404),
    "in a filter": ("GET", "/api/v1/runs?agent_name=a%00b", None, 400),
    "in a stats query": ("GET", "/api/v1/feedback/stats?workflow=a%00b", None, 400),
    "in a stream id": ("GET", "/api/v1/streams/deploys?start=1%00", None, 400),
}


@pytest.mark.parametrize(("method", "path", "body", "status"), NUL.values(), ids=NUL.keys())
def test_the_nul_character_is_refused_with_a_4xx_on_every_database(api, before, method, path, body, status):
    """PostgreSQL stores no NUL in text or jsonb, nor compares text with one: without a check it
    was a 500 there (and stored on SQLite). An id holding one names nothing: a 404."""
    assert_refused(api.request(method, path, json=body), status)
    assert_unchanged(api, before)


NUL_IN_QUERIES = [
    "/api/v1/feedback/stats?workflow_name=a%00b&stage_name=s",
    "/api/v1/feedback/templates/confidence?template_id=a%00",
    "/api/v1/approvals?agent_id=a%00",
]


@pytest.mark.parametrize("path", NUL_IN_QUERIES)
def test_a_query_value_postgresql_cannot_compare_is_a_400_there_and_finds_nothing_on_sqlite(api, before, path):
    """The net under the checks (core.api.refused_by_database): a DataError is the client's 400."""
    response = api.get(path)
    if connection.vendor == "postgresql":
        assert "The database cannot take a value" in assert_refused(response, 400, "invalid")["message"]
    else:  # SQLite compares it: it matches nothing
        assert response.status_code in (200, 404), response.text
    assert_unchanged(api, before)


def otlp_export(span_name: str) -> bytes:
    """An OTLP/protobuf trace export of one span of agent alpha."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    export = ExportTraceServiceRequest()
    spans = export.resource_spans.add()
    agent = spans.resource.attributes.add()
    agent.key, agent.value.string_value = "telemetry.agent_name", "alpha"
    span = spans.scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = uuid.uuid4().bytes, uuid.uuid4().bytes[:8], span_name
    span.start_time_unix_nano, span.end_time_unix_nano = 1_700_000_000_000_000_000, 1_700_000_001_000_000_000
    return export.SerializeToString()


def test_an_otlp_export_in_protobuf_with_nul_in_a_string_is_a_400(api, before):
    """The OTLP receiver (not in the OpenAPI schema) also takes protobuf, which the JSON parser's
    check does not see."""
    protobuf = {"Content-Type": "application/x-protobuf"}
    assert_refused(api.post("/v1/traces", content=otlp_export("fetch\x00"), headers=protobuf), 400, "invalid")
    assert_unchanged(api, before)
    assert api.post("/v1/traces", content=otlp_export("fetch"), headers=protobuf).status_code == 200


def one_span(**fields) -> dict:
    """An OTLP/JSON export of one span with `fields`."""
    return {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": uuid.uuid4().hex, "spanId": "ab" * 8, **fields}]}]}]}


MISSHAPEN_OTLP = {
    "resourceSpans not a list": {"resourceSpans": "x"},
    "a resourceSpans item not an object": {"resourceSpans": [["x"]]},
    "a resource not an object": {"resourceSpans": [{"resource": "r"}]},
    "scopeSpans a number": {"resourceSpans": [{"scopeSpans": 5}]},
    "a kind that is an object": one_span(kind={}),
    "a status that is a string": one_span(status="bad"),
    "an attribute key that is an object": one_span(attributes=[{"key": {}, "value": {}}]),
    "an intValue that is no number": one_span(attributes=[{"key": "a", "value": {"intValue": "abc"}}]),
    "an arrayValue that is a list": one_span(attributes=[{"key": "a", "value": {"arrayValue": []}}]),
    "an event that is a number": one_span(events=[1]),
}


@pytest.mark.parametrize("body", MISSHAPEN_OTLP.values(), ids=MISSHAPEN_OTLP.keys())
def test_an_otlp_json_export_of_the_wrong_shape_is_a_400(api, before, body):
    """/v1/traces walks OTLP/JSON as sent (it is not in the OpenAPI schema, so the fuzzer does not
    reach it): any part of the wrong type is the client's 400, not a 500."""
    assert "ExportTraceServiceRequest" in assert_refused(api.post("/v1/traces", json=body), 400, "invalid")["message"]
    assert_unchanged(api, before)


QUERIES = {
    "an offset past any bigint": "/api/v1/runs?offset=" + "9" * 30,
    "a limit out of range": "/api/v1/runs?limit=0",
    "a time out of range in UTC": "/api/v1/runs?created_after=0001-01-01T00:00:00%2B19:00",
    "a day that does not exist": "/api/v1/runs?created_after=2024-02-30T00:00:00Z",
    "a status that does not exist": "/api/v1/runs?status=sleeping",
    "a path that is not UTF-8": "/api/v1/runs/%FF%FE",
    "a stream position that is not an id": "/api/v1/streams/consume?types=deploys&after=yesterday",
    "a stream position past 64 bits": "/api/v1/streams/consume?types=deploys&after=" + "9" * 21,
    "a stream bound that is not an id": "/api/v1/streams/deploys?end=tomorrow",
    "a huge count": "/api/v1/streams/deploys?count=" + "9" * 30,
    "a threshold that is not a number": "/api/v1/agents/active?threshold_seconds=nan",
    "a report period out of range": "/api/v1/reports/show?days=" + "9" * 30,
    "a metric query interval out of range": "/api/v1/metrics/query?name=pages_total&interval=" + "9" * 30,
}


@pytest.mark.parametrize("path", QUERIES.values(), ids=QUERIES.keys())
def test_a_bad_query_or_path_is_a_4xx(api, before, path):
    response = api.get(path)
    assert_refused(response, 404 if "%FF" in path else 400)
    assert_unchanged(api, before)


def test_a_time_with_an_offset_postgresql_does_not_take_is_stored_and_filtered_on_as_the_same_instant_in_utc(api):
    run = run_payload("alpha", start_time="2024-05-01T12:00:00+19:30")
    assert api.post("/api/v1/runs", json=run).status_code == 201
    stored = api.get(f"/api/v1/runs/{run['event_id']}").json()
    assert datetime.fromisoformat(stored["start_time"]) == datetime(2024, 4, 30, 16, 30, tzinfo=UTC)
    for bound, found in (("2024-05-01T11:59:00%2B19:30", [run["event_id"]]), ("2024-05-01T12:01:00%2B19:30", [])):
        listed = api.get(f"/api/v1/runs?start_time_from={bound}")
        assert [r["event_id"] for r in listed.json()] == found


def test_an_agent_id_longer_than_the_registry_keeps_is_a_400_and_the_registry_sync_goes_on(api):
    response = api.post(f"/api/v1/agents/{'a' * 201}/heartbeat/start", json={})
    assert_refused(response, 400, "invalid")
    assert api.post("/api/v1/agents/alpha/heartbeat", json={}).status_code == 200
    heartbeats.sync_registry()  # what the worker runs every REGISTRY_SYNC_SECONDS
    assert Agent.objects.get().agent_id == "alpha"
    assert Agent.objects.get().last_seen_at is not None
