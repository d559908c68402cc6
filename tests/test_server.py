"""The production stack end to end: uvicorn with DEBUG off, over real HTTP, on the test database."""

import subprocess
import sys

import httpx
import pytest

from tests.conftest import make_key
from tests.runs.factories import run_payload
from tests.services import ROOT, production_env


def test_an_agent_records_and_reads_a_run_over_http(live_asgi):
    _, raw = make_key("alpha")
    headers = {"Authorization": f"Api-Key {raw}"}
    payload = run_payload()
    with httpx.Client(base_url=live_asgi, headers=headers) as http:
        assert http.get("/health").json()["status"] == "ok"
        created = http.post("/api/v1/runs", json=payload)
        assert created.status_code == 201, created.text
        assert http.post("/api/v1/runs", json=payload).json()["status"] == "duplicate"
        listed = http.get("/api/v1/runs", params={"agent_name": "alpha"}).json()
        assert [run["event_id"] for run in listed] == [payload["event_id"]]
        refused = http.post("/api/v1/runs", content=b"{not json", headers={"Content-Type": "application/json"})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "parse_error"
        assert httpx.post(f"{live_asgi}/api/v1/runs", json=payload).status_code == 401


def test_agent_key_requests_skip_the_browser_middleware_but_keep_the_security_headers(live_asgi):
    _, raw = make_key("alpha")
    keyed = httpx.post(f"{live_asgi}/api/v1/runs", json=run_payload(), headers={"Authorization": f"Api-Key {raw}"})
    assert keyed.status_code == 201, keyed.text
    assert keyed.headers["content-length"] == str(len(keyed.content))
    assert keyed.headers["x-content-type-options"] == "nosniff"
    assert keyed.headers["referrer-policy"] == "same-origin"
    assert "x-frame-options" not in keyed.headers and "set-cookie" not in keyed.headers
    anonymous = httpx.get(f"{live_asgi}/api/v1/runs")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "not_authenticated"
    assert anonymous.headers["x-frame-options"] == "DENY"
    malformed = httpx.get(f"{live_asgi}/api/v1/runs", headers={"Authorization": "Api-Key"})
    assert malformed.status_code == 401 and malformed.json()["error"]["code"] == "authentication_failed"
    # Errors on the lean path get the same headers, and a Host outside ALLOWED_HOSTS is refused.
    headers = {"Authorization": f"Api-Key {raw}"}
    missing = httpx.get(f"{live_asgi}/api/v1/runs/no-such-run", headers=headers)
    assert missing.status_code == 404 and missing.headers["x-content-type-options"] == "nosniff"
    assert missing.headers["content-length"] == str(len(missing.content))
    foreign = httpx.get(f"{live_asgi}/api/v1/runs", headers={**headers, "Host": "evil.example"})
    assert foreign.status_code == 400


def test_the_admin_and_its_static_files_are_served(live_asgi):
    login = httpx.get(f"{live_asgi}/admin/login/")
    assert login.status_code == 200 and "csrfmiddlewaretoken" in login.text
    css = next(part.split('"')[1] for part in login.text.split("href=") if "admin/css/base" in part)
    static = httpx.get(f"{live_asgi}{css}")
    assert static.status_code == 200 and "max-age" in static.headers["cache-control"]


def test_the_api_docs_need_no_internet(live_asgi):
    docs = httpx.get(f"{live_asgi}/api/docs/")
    assert docs.status_code == 200
    scripts = [part.split('"')[1] for part in docs.text.split("src=")[1:]]
    assert scripts and all(src.startswith("/static/") for src in scripts), scripts
    assert all(httpx.get(f"{live_asgi}{src}").status_code == 200 for src in scripts)


@pytest.mark.django_db
def test_check_deploy_passes_with_production_settings():
    env = production_env(ALLOWED_HOSTS="telemetry.example.com", BEHIND_PROXY="true", SECURE_SSL_REDIRECT="true")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_refuses_to_start_without_a_secret_key():
    env = production_env(SECRET_KEY="")
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "SECRET_KEY (or SECRET_KEY_FILE) is required" in result.stderr
