"""Bad input against the real server (uvicorn on the test database): schemathesis over every
operation of the OpenAPI schema, then by hand: bodies over the limit, deep JSON, bytes that are
not UTF-8, batches over the item limit, other content types, malformed and out-of-range JSON, NUL
characters, bad queries, and websocket frames the live feed does not take. Each is refused with a
4xx and the API's error body (`{"error": {"code", "message", "fields"?}}`), the server keeps
serving, and what was stored before (a run and its event) reads the same, every row count too."""

from __future__ import annotations

import json
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime

import httpx
import pytest
import requests
import schemathesis
from django.apps import apps
from django.db import connection
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from coordination import heartbeats
from coordination.models import Agent
from core.converters import IdConverter
from core.parsers import MAX_DEPTH
from core.scopes import known
from tests.conftest import database_url, make_key
from tests.runs.factories import otlp_json, run_payload
from tests.services import asgi_server, production_env

pytestmark = pytest.mark.django_db(transaction=True)

API_MAX_BODY_BYTES = 16 * 1024
BATCH_MAX_BODY_BYTES = 256 * 1024
BATCH_MAX_ITEMS = 50
WS_MAX_SIZE = 64 * 1024
LIMITS = {
    "API_MAX_BODY_BYTES": str(API_MAX_BODY_BYTES),
    "BATCH_MAX_BODY_BYTES": str(BATCH_MAX_BODY_BYTES),
    "BATCH_MAX_ITEMS": str(BATCH_MAX_ITEMS),
    "UVICORN_WS_MAX_SIZE": str(WS_MAX_SIZE),  # uvicorn's --ws-max-size (its default: 16 MiB)
    # Every long wait (signals/receive, approvals/<id>/wait) ends after this: generated timeouts
    # cannot hold the run up.
    "LONG_WAIT_MAX_SECONDS": "0.2",
}


@pytest.fixture(scope="module")
def server(django_db_setup, static_root) -> str:
    """One real server for the module, with small limits so the tests stay fast. Each test makes
    its own rows (and the database is emptied after each)."""
    env = production_env(DATABASE_URL=database_url(), TELEMETRY_VAR_DIR=static_root, **LIMITS)
    with asgi_server(env) as base:
        yield base


@pytest.fixture(scope="module")
def client(server):
    """One HTTP client for the module (a new one costs an SSL context)."""
    with httpx.Client(base_url=server, timeout=30) as client:
        yield client


@pytest.fixture
def api(client) -> httpx.Client:
    """The client, with a new agent key that has every scope and may act as any agent."""
    client.headers["Authorization"] = f"Api-Key {make_key('fuzzer', agents=['*'], scopes=list(known()))[1]}"
    return client


def stored_rows() -> dict[str, int]:
    """How many rows each table of what agents send holds."""
    labels = ("runs", "coordination", "approvals", "notifications", "core")
    return {model._meta.label: model.objects.count() for label in labels for model in apps.get_app_config(label).get_models()}


def snapshot(api: httpx.Client, event_id: str) -> dict:
    """What the server shows of the run and its events, and every row count."""
    run = api.get(f"/api/v1/runs/{event_id}").json()
    return {"run": run, "events": api.get(f"/api/v1/runs/{event_id}/events").json(), "rows": stored_rows()}


@pytest.fixture
def before(api) -> dict:
    """A run with an event, sent before the bad input: its snapshot."""
    run = run_payload("alpha", metrics_json={"pages": 3})
    assert api.post("/api/v1/runs", json=run).status_code == 201
    event = {"event_type": "fetched", "payload": {"url": "https://example.com"}}
    assert api.post(f"/api/v1/runs/{run['event_id']}/events", json=event).status_code == 200
    return snapshot(api, run["event_id"])


def assert_unchanged(api: httpx.Client, before: dict) -> None:
    """The server still answers, and shows the run, its events and every row count as before."""
    assert api.get("/health").status_code == 200
    assert snapshot(api, before["run"]["event_id"]) == before


def assert_refused(response: httpx.Response, status: int, code: str | None = None) -> dict:
    """`response` has `status` and the API's error body (with `code`, if given); the error."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"]
    if code:
        assert error["code"] == code, error
    return error


# --- schemathesis -------------------------------------------------------------------------

EXAMPLES_PER_MODE = 6  # per operation, positive and negative: 44 operations, about 450 requests
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def known_path_parameters(api: httpx.Client) -> dict[str, str]:
    """Ids that exist, so that some generated requests find something (and its 200 is checked)."""
    run = run_payload("fuzz-agent")
    api.post("/api/v1/runs", json=run).raise_for_status()
    asked = api.post("/api/v1/approvals", json={"agent_id": "fuzz-agent", "approval_type": "deploy"})
    beat = api.post("/api/v1/agents/fuzz-agent/heartbeat/start", json={})
    published = api.post("/api/v1/streams/fuzz.events", json={"data": {"n": 1}})
    trace_id = uuid.uuid4().hex
    traced = api.post("/v1/traces", json=otlp_json(trace_id, "fuzz-agent"))
    for response in (asked, beat, published, traced):
        response.raise_for_status()
    return {
        "event_id": run["event_id"],
        "request_id": asked.json()["request_id"],
        "agent_id": "fuzz-agent",
        "event_type": "fuzz.events",
        "name": "show",
        "trace_id": trace_id,
    }


ANY_STRING = [{"type": "string"}, {"type": "string", "pattern": f"^{IdConverter.regex}$"}]  # no request breaks these


def can_be_wrong(operation) -> bool:
    """Whether a request can break the operation's schema: it takes a body, or a parameter that
    is more than any string (else negative generation is unsatisfiable, and slow to say so)."""
    definition = operation.definition.raw
    return "requestBody" in definition or any(p["schema"] not in ANY_STRING for p in definition.get("parameters", []))


def test_every_operation_answers_generated_requests_without_a_server_error_and_as_its_schema_says(server, api):
    """Every operation of /api/schema/ (none left out: the long waits end after
    LONG_WAIT_MAX_SECONDS, and consume's block_ms is not in the schema), with requests that fit
    the schema and requests that do not, sent with a key holding every scope. Each answer is no
    5xx, has a documented status and content type, and a body its schema allows. Reproducible:
    derandomized, no example database. Failures are collected over every operation, then shown."""
    schema = schemathesis.openapi.from_url(f"{server}/api/schema/")
    known = known_path_parameters(api)
    key = {"Authorization": api.headers["Authorization"]}
    sent, failures, operations = [], [], 0
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1
            names = [p.name for p in operation.path_parameters]
            modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if can_be_wrong(operation) else [GenerationMode.POSITIVE]
            for mode in modes:
                strategy = operation.as_strategy(mode)
                if names and mode is GenerationMode.POSITIVE:  # some of the time, ids that exist
                    strategy = st.one_of(strategy, operation.as_strategy(mode, path_parameters={n: known[n] for n in names}))

                @settings(
                    max_examples=EXAMPLES_PER_MODE,
                    derandomize=True,
                    database=None,
                    deadline=None,
                    phases=[Phase.explicit, Phase.generate, Phase.shrink],
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=strategy)
                def call(case):
                    sent.append(case.operation.label)
                    case.call_and_validate(base_url=server, session=session, headers=key, checks=CHECKS, timeout=10)

                try:
                    call()
                except (Exception, BaseExceptionGroup) as failure:  # noqa: BLE001 - every operation's failure, shown at once
                    failures.append(f"{operation.label} ({mode.value}):\n{failure}")
    assert not failures, "\n\n".join(failures)
    assert len(set(sent)) == operations >= 40
    assert len(sent) >= 300
    assert api.get("/health").status_code == 200


# --- by hand ------------------------------------------------------------------------------

# One of each kind of view: a DRF view, a DRF batch view, and async views.
JSON_PATHS = ["/api/v1/runs", "/api/v1/ingest", "/api/v1/signals", "/api/v1/approvals"]
LIMIT = {"/api/v1/runs": API_MAX_BODY_BYTES, "/api/v1/signals": API_MAX_BODY_BYTES, "/api/v1/approvals": API_MAX_BODY_BYTES}


def valid_body(path: str, padding: int = 0):
    """A body `path` accepts (stores), larger than `padding` bytes."""
    pad = {"pad": "x" * padding}
    return {
        "/api/v1/runs": run_payload("alpha", metrics_json=pad),
        "/api/v1/runs/batch": [run_payload("alpha", metrics_json=pad)],
        "/api/v1/ingest": [{"kind": "run", **run_payload("alpha", metrics_json=pad)}],
        "/api/v1/signals": {"signal_type": "go", "source_agent": "alpha", "target_agent": "beta", "payload": pad},
        "/api/v1/approvals": {"approval_type": "deploy", "agent_id": "alpha", "context": pad},
    }[path]


@pytest.mark.parametrize("path", [*JSON_PATHS, "/api/v1/runs/batch"])
def test_a_body_over_the_limit_is_a_413_and_changes_nothing(api, before, path):
    limit = LIMIT.get(path, BATCH_MAX_BODY_BYTES)
    response = api.post(path, json=valid_body(path, padding=limit))
    error = assert_refused(response, 413, "too_large")
    assert str(limit) in error["message"]
    assert_unchanged(api, before)
    assert api.post(path, json=valid_body(path, padding=limit - 500)).status_code in (200, 201)


@pytest.mark.parametrize("opener", ["[", '{"a": '])
@pytest.mark.parametrize("path", [*JSON_PATHS, "/v1/traces"])
def test_json_nested_thousands_of_levels_deep_is_a_400_and_the_server_survives(api, before, path, opener):
    depth = min(100_000, (LIMIT.get(path, BATCH_MAX_BODY_BYTES) - 100) // len(opener))  # within the body limit
    body = (opener * depth).encode()
    response = api.post(path, content=body, headers={"Content-Type": "application/json"})
    error = assert_refused(response, 400)
    assert f"nested more than {MAX_DEPTH} levels deep" in error["message"]
    assert_unchanged(api, before)


def nested(levels: int) -> list:
    """Arrays `levels` deep."""
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_json_nested_to_the_limit_is_stored_and_read_back_and_one_level_deeper_is_a_400(api, before):
    """Without the limit, a run nested some 250 levels deep was stored but never read back (500)."""
    deepest = run_payload("alpha", metrics_json={"a": nested(MAX_DEPTH - 2)})  # the run, its metrics_json, the arrays
    too_deep = run_payload("alpha", metrics_json={"a": nested(MAX_DEPTH - 1)})
    assert_refused(api.post("/api/v1/runs", json=too_deep), 400, "parse_error")
    assert_unchanged(api, before)
    assert api.post("/api/v1/runs", json=deepest).status_code == 201
    assert api.get(f"/api/v1/runs/{deepest['event_id']}").json()["metrics_json"] == deepest["metrics_json"]
    assert len(api.get("/api/v1/runs").json()) == 2


@pytest.mark.parametrize("path", [*JSON_PATHS, "/v1/traces"])
def test_a_body_that_is_not_utf8_is_a_400(api, before, path):
    body = json.dumps(valid_body(path if path != "/v1/traces" else "/api/v1/runs")).encode().replace(b"alpha", b"alph\xe9")
    response = api.post(path, content=body, headers={"Content-Type": "application/json"})
    assert_refused(response, 400)
    assert_unchanged(api, before)


def batch_item(path: str, run_event_id: str):
    """An item the batch endpoint `path` stores."""
    return {
        "/api/v1/runs/batch": lambda: run_payload("alpha"),
        "/api/v1/ingest": lambda: {"kind": "run", **run_payload("alpha")},
        "/api/v1/events/batch": lambda: {"run_event_id": run_event_id, "event_type": "fetched"},
        "/api/v1/runs/{run}/events": lambda: {"event_type": "fetched"},
        "/api/v1/llm-usage": lambda: {"agent_name": "alpha", "model": "claude-sonnet-4", "input_tokens": 10},
        "/api/v1/metrics": lambda: {"agent_name": "alpha", "name": "pages_total", "metric_type": "counter", "value": 1},
        "/api/v1/feedback": lambda: {"workflow_name": "w", "stage_name": "s", "tier": "cheap", "quality_score": 0.5},
        "/api/v1/feedback/templates": lambda: {"template_id": "t", "good": True},
    }[path]()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/runs/batch",
        "/api/v1/ingest",
        "/api/v1/events/batch",
        "/api/v1/runs/{run}/events",
        "/api/v1/llm-usage",
        "/api/v1/metrics",
        "/api/v1/feedback",
        "/api/v1/feedback/templates",
    ],
)
def test_a_batch_over_the_item_limit_is_refused_whole(api, before, path):
    run_event_id = before["run"]["event_id"]
    url = path.replace("{run}", run_event_id)
    response = api.post(url, json=[batch_item(path, run_event_id) for _ in range(BATCH_MAX_ITEMS + 1)])
    error = assert_refused(response, 400, "invalid")
    assert f"At most {BATCH_MAX_ITEMS} items" in error["fields"]["body"][0]
    assert_unchanged(api, before)
    full = api.post(url, json=[batch_item(path, run_event_id) for _ in range(BATCH_MAX_ITEMS)])
    assert full.status_code == 200 and full.json()["inserted"] == BATCH_MAX_ITEMS, full.text


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml", None],
)
@pytest.mark.parametrize("path", JSON_PATHS)
def test_a_body_of_another_content_type_is_a_415(api, before, path, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = api.post(path, content=json.dumps(valid_body(path)).encode(), headers=headers)
    assert_refused(response, 415, "unsupported_media_type")
    assert_unchanged(api, before)
    json_with_charset = {"Content-Type": "application/json; charset=utf-8"}
    accepted = api.post(path, content=json.dumps(valid_body(path)).encode(), headers=json_with_charset)
    assert accepted.status_code in (200, 201)


def run_json(**fields) -> bytes:
    return json.dumps(run_payload("alpha", **fields)).encode()


def run_with_number(number: bytes) -> bytes:
    """A run whose metrics_json holds `number` as written."""
    return run_json(metrics_json={"x": 1}).replace(b'"x": 1', b'"x": ' + number)


MALFORMED = {
    "an empty body": ("/api/v1/runs", b"", "invalid"),
    "an empty body to a batch": ("/api/v1/ingest", b"", "invalid"),
    "an empty body to an async view": ("/api/v1/signals", b"", "invalid"),
    "an array for an object": ("/api/v1/runs", b"[1, 2]", "invalid"),
    "a string for an object": ("/api/v1/signals", b'"go"', "invalid"),
    "null for an object": ("/api/v1/approvals", b"null", "invalid"),
    "a number for a batch": ("/api/v1/runs/batch", b"42", "invalid"),
    "truncated JSON": ("/api/v1/runs", run_json()[:-5], "parse_error"),
    "NaN": ("/api/v1/runs", run_with_number(b"NaN"), "parse_error"),
    "Infinity": ("/api/v1/signals", b'{"signal_type": "go", "payload": {"x": -Infinity}}', "parse_error"),
    "a number too large for a float": ("/api/v1/runs", run_with_number(b"1e400"), "parse_error"),
    "an integer of 5000 digits": ("/api/v1/runs", run_with_number(b"9" * 5000), "parse_error"),
    "an integer too large for its column": ("/api/v1/runs", run_json(items_failed=2**31), "invalid"),
    "a huge integer in a batch": ("/api/v1/runs/batch", b"[" + run_json(items_failed=10**30) + b"]", None),
    "a huge token count": ("/api/v1/llm-usage", b'{"agent_name": "a", "model": "m", "input_tokens": 1e30}', None),
    "a time out of range in UTC": ("/api/v1/runs", run_json(start_time="0001-01-01T00:00:00+05:00"), "invalid"),
    "JSON in a string nested too deep": ("/api/v1/runs", run_json(metrics_json="[" * 5000), "invalid"),
}


@pytest.mark.parametrize(("path", "body", "code"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_or_out_of_range_json_is_refused_and_says_why(api, before, path, body, code):
    response = api.post(path, content=body, headers={"Content-Type": "application/json"})
    if code is None:  # in a batch: the item is refused, and its result says why
        assert response.status_code == 200 and response.json()["failed"] == 1, response.text
        (result,) = response.json()["results"]
        assert result["status"] == "rejected" and result["error"]["fields"], result
    else:
        assert_refused(response, 400, code)
    assert_unchanged(api, before)


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


# --- the websocket live feed --------------------------------------------------------------


@pytest.fixture
def feed(server):
    """Connects readers of the live feed (a key with streams:read, no Origin: an agent program),
    each ready (its `ready` message read); all closed at the end."""
    from websockets.sync.client import connect as ws_connect

    headers = {"Authorization": f"Api-Key {make_key('watcher', scopes=['streams:read'])[1]}"}
    url = server.replace("http", "ws", 1) + "/ws/live/"
    with ExitStack() as opened:

        def connect():
            client = opened.enter_context(ws_connect(url, additional_headers=headers, open_timeout=10))
            assert json.loads(client.recv(10))["type"] == "ready"
            return client

        yield connect


def closed_with(client) -> tuple[list[dict], int | None]:
    """The messages `client` gets until the server closes it, and the close code."""
    from websockets.exceptions import ConnectionClosed

    messages = []
    with pytest.raises(ConnectionClosed) as closed:
        for _ in range(100):
            messages.append(json.loads(client.recv(10)))
    return messages, closed.value.rcvd and closed.value.rcvd.code


def still_served(api: httpx.Client, client) -> None:
    """`client` gets an event published now."""
    mark = uuid.uuid4().hex
    assert api.post("/api/v1/streams/deploys", json={"data": {"mark": mark}}).status_code == 201
    for _ in range(100):
        message = json.loads(client.recv(10))
        if any(event["data"].get("mark") == mark for event in message.get("events", [])):
            return
    raise AssertionError("the event never arrived")


FRAMES = {
    "text that is not JSON": "hello?",
    "binary": b"\x00\xff\xfe binary",
    "JSON of a shape it does not know": '{"type": "subscribe", "types": 5}',
    "a JSON array": "[]",
    "an empty text": "",
}


@pytest.mark.parametrize("frame", FRAMES.values(), ids=FRAMES.keys())
def test_a_frame_sent_to_the_live_feed_gets_an_error_and_a_close_and_other_clients_go_on(api, feed, frame):
    """The feed takes no messages from clients."""
    bystander, sender = feed(), feed()
    sender.send(frame)
    messages, code = closed_with(sender)
    assert code == 4400
    assert messages[-1]["type"] == "error" and messages[-1]["error"]["code"] == "unexpected_message"
    still_served(api, bystander)
    still_served(api, feed())


def test_a_frame_over_the_size_limit_closes_that_connection_with_1009_and_no_other(api, feed):
    bystander, sender = feed(), feed()
    sender.send("x" * (WS_MAX_SIZE + 1))
    assert closed_with(sender)[1] == 1009  # "message too big"
    still_served(api, bystander)
    still_served(api, feed())
