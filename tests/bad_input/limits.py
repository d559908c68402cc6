"""The small limits the bad-input tests' server runs with, and what each test checks after bad
input: a 4xx with the API's error body, and the server showing what was stored as before."""

from __future__ import annotations

import httpx
from django.apps import apps

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


def stored_rows() -> dict[str, int]:
    """How many rows each table of what agents send holds."""
    labels = ("runs", "coordination", "approvals", "notifications", "core")
    return {model._meta.label: model.objects.count() for label in labels for model in apps.get_app_config(label).get_models()}


def snapshot(api: httpx.Client, event_id: str) -> dict:
    """What the server shows of the run and its events, and every row count."""
    run = api.get(f"/api/v1/runs/{event_id}").json()
    return {"run": run, "events": api.get(f"/api/v1/runs/{event_id}/events").json(), "rows": stored_rows()}


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
