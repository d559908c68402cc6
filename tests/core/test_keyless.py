"""Key-less requests from trusted addresses (KEYLESS_WRITES_FROM) act as the key KEYLESS_KEY names:
its agents, scopes and rate limit; from anywhere else, or with the settings unset, a 401 as before."""

import pytest
from django.core.checks import Error, Warning
from rest_framework.test import APIClient

from core.checks import unkeyed_addresses
from runs.models import Run
from tests.conftest import key_client, make_key
from tests.runs.factories import otlp_json, run_payload
from traces.models import Span

pytestmark = pytest.mark.django_db

BATCH = "/api/v1/runs/batch"
SCOPES = ["runs:write", "runs:read", "metrics:read", "coordination:write"]


@pytest.fixture
def keyless(settings):
    """The settings on for loopback (the test client's address), and the key they name."""
    settings.KEYLESS_WRITES_FROM = ["10.0.0.0/8", "127.0.0.1"]
    settings.KEYLESS_KEY = "local-telemetry"
    return make_key("local-telemetry", agents=["hugo-*"], scopes=SCOPES)


def test_it_is_off_by_default(settings):
    assert settings.KEYLESS_WRITES_FROM == [] and settings.KEYLESS_KEY == ""
    make_key("local-telemetry", agents=["*"], scopes=SCOPES)
    response = APIClient().post(BATCH, [run_payload("hugo-translator")], format="json")
    assert response.status_code == 401 and response.json()["error"]["code"] == "not_authenticated"
    assert APIClient().get("/metrics").status_code == 401


def test_a_request_without_a_key_from_a_listed_address_acts_as_the_named_key(keyless):
    key, _ = keyless
    anonymous = APIClient()
    assert anonymous.post(BATCH, [run_payload("hugo-translator")], format="json").status_code == 200
    assert anonymous.post("/api/v1/runs", run_payload("hugo-reviewer"), format="json").status_code == 201
    assert len(anonymous.get("/api/v1/runs").json()) == 2
    foreign = anonymous.post(BATCH, [run_payload("alpha")], format="json").json()  # not one of the key's agents
    assert foreign["failed"] == 1 and "may not act as agent 'alpha'" in foreign["errors"][0]
    assert anonymous.post("/api/v1/agents/hugo-translator/heartbeat/start", {}, format="json").status_code == 200
    assert anonymous.post("/api/v1/agents/alpha/heartbeat/start", {}, format="json").status_code == 403
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_an_opentelemetry_export_without_a_key_records_the_named_keys_agents_spans(keyless):
    response = APIClient().post("/v1/traces", otlp_json("a" * 32, "hugo-translator"), format="json")
    assert response.status_code == 200 and Span.objects.get().agent_name == "hugo-translator"
    foreign = APIClient().post("/v1/traces", otlp_json("b" * 32, "alpha"), format="json").json()
    assert "may not act as" in foreign["partialSuccess"]["errorMessage"] and Span.objects.count() == 1


def test_the_named_keys_scopes_bound_what_key_less_requests_do(keyless):
    key, _ = keyless
    key.scopes = ["runs:write"]
    key.save()
    anonymous = APIClient()
    assert anonymous.post(BATCH, [run_payload("hugo-translator")], format="json").status_code == 200
    assert anonymous.get("/api/v1/runs").status_code == 403
    refused = anonymous.get("/metrics")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "missing_scope"


def test_other_addresses_get_a_401(keyless):
    stranger = APIClient(REMOTE_ADDR="192.0.2.10")
    response = stranger.post(BATCH, [run_payload("hugo-translator")], format="json")
    assert response.status_code == 401 and response.json()["error"]["code"] == "not_authenticated"
    assert stranger.get("/metrics").status_code == 401
    assert stranger.post("/api/v1/agents/hugo-translator/heartbeat/start", {}, format="json").status_code == 401
    assert APIClient(REMOTE_ADDR="10.1.2.3").get("/api/v1/runs").status_code == 200
    assert APIClient(REMOTE_ADDR="::ffff:10.1.2.3").get("/api/v1/runs").status_code == 200  # a dual-stack socket's


def test_a_request_with_a_key_is_that_keys_even_from_a_listed_address(keyless):
    _, alpha = make_key("alpha")
    assert key_client(alpha).post(BATCH, [run_payload("alpha")], format="json").json()["inserted"] == 1
    assert key_client(alpha).post(BATCH, [run_payload("hugo-translator")], format="json").json()["failed"] == 1
    wrong = key_client("not.a-key").post(BATCH, [run_payload("hugo-translator")], format="json")
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_key"  # no fall-back to key-less
    assert APIClient(HTTP_AUTHORIZATION="Basic eDp5").get("/metrics").status_code == 401


def test_a_staff_session_stays_the_staff_members(keyless, admin_client):
    response = admin_client.post(BATCH, [run_payload("alpha")], content_type="application/json")
    assert response.json()["inserted"] == 1  # any agent: staff, not the key-less key


@pytest.mark.parametrize(("named", "code"), [("nobody", "keyless_key"), ("local-telemetry", "expired_key")])
def test_a_name_that_matches_no_usable_key_is_a_401_that_says_so(keyless, settings, named, code):
    key, _ = keyless
    key.expiry_date = "2020-01-01T00:00:00Z"
    key.save()
    settings.KEYLESS_KEY = named
    response = APIClient().post(BATCH, [run_payload("hugo-translator")], format="json")
    assert response.status_code == 401 and response.json()["error"]["code"] == code
    assert not Run.objects.exists()


def test_two_keys_of_that_name_are_refused(keyless):
    make_key("local-telemetry", agents=["*"], scopes=SCOPES)
    response = APIClient().get("/api/v1/runs")
    assert response.status_code == 401 and "several agent keys" in response.json()["error"]["message"]


def test_key_less_requests_share_the_named_keys_rate_limit(keyless, settings):
    _, raw = keyless
    settings.API_RATE_LIMIT = "3/min"
    assert key_client(raw).get("/api/v1/runs").status_code == 200
    assert APIClient().get("/api/v1/runs").status_code == 200
    assert APIClient().post("/api/v1/agents/hugo-translator/heartbeat/start", {}, format="json").status_code == 200
    throttled = APIClient().get("/api/v1/runs")
    assert throttled.status_code == 429 and throttled.json()["error"]["code"] == "throttled"
    assert key_client(raw).get("/api/v1/runs").status_code == 429


def test_the_system_checks_warn_of_wide_networks_and_refuse_bad_settings(settings):
    assert unkeyed_addresses(None) == []
    settings.KEYLESS_WRITES_FROM, settings.KEYLESS_KEY = ["127.0.0.1", "::1"], "local-telemetry"
    assert unkeyed_addresses(None) == []
    settings.KEYLESS_WRITES_FROM = ["127.0.0.1", "10.0.0.0/8"]
    (warning,) = unkeyed_addresses(None)
    assert isinstance(warning, Warning) and warning.id == "core.W001" and "10.0.0.0/8" in warning.msg
    settings.KEYLESS_KEY = ""
    assert [m.id for m in unkeyed_addresses(None)] == ["core.E002"]
    settings.METRICS_ALLOWED_IPS = ["localhost"]
    (error,) = unkeyed_addresses(None)
    assert isinstance(error, Error) and error.id == "core.E001" and "'localhost'" in error.msg
