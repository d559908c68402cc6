"""Bad request bodies: over the size limit, JSON nested too deep, bytes that are not UTF-8, batches
over the item limit, other content types, malformed and out-of-range JSON."""

from __future__ import annotations

import json

import pytest

from core.parsers import MAX_DEPTH
from tests.bad_input.limits import API_MAX_BODY_BYTES, BATCH_MAX_BODY_BYTES, BATCH_MAX_ITEMS, assert_refused, assert_unchanged
from tests.runs.factories import run_payload

pytestmark = pytest.mark.django_db(transaction=True)

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
