import pytest

from core.tasks import record_worker_heartbeat

pytestmark = pytest.mark.django_db


def test_health_reports_database_and_redis(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["status"] == "ok"
    assert body["redis"]["status"] == "ok"
    assert body["worker_and_beat"]["status"] == "never"


def test_health_sees_the_worker_tick(client):
    record_worker_heartbeat()
    assert client.get("/health").json()["worker_and_beat"]["status"] == "ok"


def test_health_is_503_when_redis_is_down(client, settings):
    from operations.embedded_redis import free_port

    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{free_port()}/0"}}
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["redis"]["status"] == "down"
    assert response.json()["database"]["status"] == "ok"


@pytest.mark.parametrize("debug", [False, True])
def test_unknown_api_paths_are_json_404s(client, settings, debug):
    settings.DEBUG = debug  # `make run`'s default: Django would answer its own HTML page
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_the_openapi_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/runs/batch" in schema.content
    assert client.get("/api/docs/").status_code == 200


def test_the_openapi_schema_is_valid_and_complete():
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")


def test_the_async_endpoints_are_in_the_schema_with_their_bodies_and_scopes(client):
    from django.urls import get_resolver

    from core.openapi import _endpoints

    paths = client.get("/api/schema/", {"format": "json"}).json()["paths"]
    declared = {path for path, _ in _endpoints(get_resolver().url_patterns, "/")}
    assert declared and declared <= set(paths)
    send = paths["/api/v1/signals"]["post"]
    assert send["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/SignalIn"}
    assert "`coordination:write`" in send["description"]
    assert [p["name"] for p in paths["/api/v1/approvals/{request_id}/wait"]["post"]["parameters"]] == ["request_id"]
