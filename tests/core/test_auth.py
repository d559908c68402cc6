"""The auth matrix: who may read and write runs."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import AgentKey
from runs.models import Run
from tests.conftest import key_client, make_key
from tests.runs.factories import run_payload

pytestmark = pytest.mark.django_db

URL = "/api/v1/runs"


def test_no_key_is_a_401_with_a_challenge(anonymous):
    response = anonymous.post(URL, run_payload(), format="json")
    assert response.status_code == 401
    assert not Run.objects.exists()
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response.headers["WWW-Authenticate"].startswith("Api-Key")
    assert anonymous.get(URL).status_code == 401


@pytest.mark.parametrize("header", ["Api-Key nonsense.value", "Bearer abc", "Api-Key "])
def test_an_unknown_key_is_a_401(header):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get(URL).status_code == 401


def test_a_revoked_key_is_a_401():
    key, raw = make_key("alpha")
    key.revoked = True
    key.save()
    response = key_client(raw).post(URL, run_payload(), format="json")
    assert response.status_code == 401
    assert not Run.objects.exists()


def test_an_expired_key_is_a_401():
    _, raw = make_key("alpha", expiry_date=timezone.now() - timedelta(seconds=1))
    response = key_client(raw).get(URL)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "expired_key"


def test_a_key_for_another_agent_is_a_403(other_agent):
    response = other_agent.post(URL, run_payload(agent_name="alpha"), format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "agent_forbidden"
    assert not Run.objects.exists()


def test_a_key_cannot_patch_another_agents_run(agent, other_agent):
    payload = run_payload()
    agent.post(URL, payload, format="json")
    response = other_agent.patch(f"{URL}/{payload['event_id']}", {"status": "cancelled"}, format="json")
    assert response.status_code == 403
    assert Run.objects.get().status == "running"


def test_bearer_is_accepted_as_well_as_api_key():
    _, raw = make_key("alpha")
    assert key_client(raw, scheme="Bearer").post(URL, run_payload(), format="json").status_code == 201


def test_glob_patterns_bind_a_key_to_a_family_of_agents():
    _, raw = make_key("crawlers", agents=["crawler-*"])
    client = key_client(raw)
    assert client.post(URL, run_payload(agent_name="crawler-7"), format="json").status_code == 201
    assert client.post(URL, run_payload(agent_name="indexer-1"), format="json").status_code == 403
    assert list(Run.objects.values_list("agent_name", flat=True)) == ["crawler-7"]


def test_a_key_without_the_scope_is_a_403():
    _, raw = make_key("alpha", scopes=["runs:read"])
    client = key_client(raw)
    assert client.get(URL).status_code == 200
    response = client.post(URL, run_payload(), format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "missing_scope"
    assert not Run.objects.exists()


def test_staff_use_their_session_and_may_write_for_any_agent(staff):
    assert staff.get(URL).status_code == 200
    response = staff.post(URL, run_payload(agent_name="anyone"), format="json")
    assert response.status_code == 403  # CSRF: a session write needs the token
    assert "CSRF" in response.json()["error"]["message"]
    assert not Run.objects.exists()


def test_staff_session_with_csrf_token_writes(staff):
    staff.get("/admin/")
    token = staff.cookies["csrftoken"].value
    response = staff.post(URL, run_payload(agent_name="anyone"), format="json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201


def test_a_logged_in_user_who_is_not_staff_is_refused(db, django_user_model):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_login(django_user_model.objects.create_user("visitor", password="x"))
    assert client.get(URL).status_code == 403


def test_keys_are_stored_hashed_and_last_use_is_recorded():
    key, raw = make_key("alpha")
    assert raw not in key.hashed_key and key.hashed_key.startswith("sha512$$")
    key_client(raw).get(URL)
    assert AgentKey.objects.get(pk=key.pk).last_used_at is not None


def test_api_rate_limit_answers_429_with_retry_after(settings):
    settings.API_RATE_LIMIT = "2/min"
    client = key_client(make_key("alpha")[1])
    assert [client.get(URL).status_code for _ in range(2)] == [200, 200]
    refused = client.get(URL)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "throttled"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    other = key_client(make_key("beta")[1])
    assert other.get(URL).status_code == 200  # each key has its own budget
