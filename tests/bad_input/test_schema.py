"""Schemathesis over every operation of the OpenAPI schema: generated requests, fitting the schema
and not, get no 5xx and answers as the schema says."""

from __future__ import annotations

import uuid

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.converters import IdConverter
from tests.runs.factories import otlp_json, run_payload

pytestmark = pytest.mark.django_db(transaction=True)

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
