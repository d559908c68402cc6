"""Personas and helpers shared by every app's tests: staff, agents with keys, strangers."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from rest_framework.test import APIClient

from core.models import AgentKey
from core.redis import get_redis
from core.scopes import agent_default, known, permissions_for
from tests.services import ROOT, asgi_server, production_env


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """SQLite tests use a file, not memory, so a server in another process sees the same data."""
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")


def database_url() -> str:
    """The URL of the test database, for a server started in another process."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture(scope="session")
def static_root(tmp_path_factory, django_db_setup) -> str:
    """collectstatic once, as a production deployment does."""
    var_dir = tmp_path_factory.mktemp("var")
    env = production_env(TELEMETRY_VAR_DIR=str(var_dir))
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    return str(var_dir)


@pytest.fixture
def server_env(transactional_db, static_root) -> dict[str, str]:
    """The environment of a production server process on the test database."""
    return production_env(DATABASE_URL=database_url(), TELEMETRY_VAR_DIR=static_root)


@pytest.fixture
def live_asgi(server_env) -> str:
    """The real web server (uvicorn, DEBUG off) in a subprocess on the test database; its base URL."""
    with asgi_server(server_env) as base:
        yield base


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser():
    """Headless Chromium (Debian's, installed by `make test`). Playwright's sync API runs an event
    loop in this thread: make database rows in fixtures that come before this one."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def logged_in_page(browser, url: str, username: str, password: str = "pw", **options):  # noqa: S107 - the test users' one
    """A new page that opened `url` and signed in on the admin login form it was sent to."""
    page = browser.new_page(**options)
    page.goto(url)
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    return page


@pytest.fixture(autouse=True)
def clean_redis():
    get_redis().flushdb()


def make_key(name: str, agents: list[str] | None = None, scopes: list[str] | None = None, **fields) -> tuple[AgentKey, str]:
    key = AgentKey(name=name, agents=agents or [name], scopes=agent_default() if scopes is None else scopes, **fields)
    raw = AgentKey.objects.assign_key(key)
    key.save()
    return key, raw


def make_reviewer(name: str, *groups, password: str = "pw", **fields):  # noqa: S107 - the test users' one
    """A staff user who may view and decide approval requests (in `groups`, if given)."""
    user = get_user_model().objects.create_user(name, password=password, is_staff=True, **fields)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_approvalrequest", "decide_approvalrequest"]))
    user.groups.add(*groups)
    return user


def at_once(call, times: int = 6) -> list:
    """What `call()` returns in each of `times` threads started together (each closes its own
    database connection)."""
    results, start = [], threading.Barrier(times)

    def run():
        start.wait()
        try:
            results.append(call())
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def go_silent(agent: APIClient, name: str = "alpha", seconds: float = 1) -> None:
    """Start `name`'s heartbeat with a `seconds` threshold and let it pass without a beat."""
    response = agent.post(f"/api/v1/agents/{name}/heartbeat/start", {"stale_after_seconds": seconds}, format="json")
    assert response.status_code == 200, response.content
    time.sleep(seconds + 0.2)


def key_client(raw_key: str, scheme: str = "Api-Key") -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {raw_key}")
    return client


@pytest.fixture
def eager():
    """Celery tasks run in this process (so mail lands in Django's test outbox)."""
    from telemetry_site.celery import app as celery_app

    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


@pytest.fixture
def agent(db) -> APIClient:
    """An API client acting as agent 'alpha' with every agent scope."""
    return key_client(make_key("alpha")[1])


@pytest.fixture
def other_agent(db) -> APIClient:
    """An API client acting as agent 'beta'."""
    return key_client(make_key("beta")[1])


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


def make_operator(django_user_model, username: str, password: str = "pw"):  # noqa: S107 - the test users' one
    """A staff user with every view permission (and no other): sees every page, changes nothing."""
    user = django_user_model.objects.create_user(username, password=password, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    return user


def api_permissions() -> list[Permission]:
    """The model permissions behind every API scope (core.scopes.permissions_for)."""
    wanted = {perm for scope in known() for perm in permissions_for(scope)}
    found = Permission.objects.select_related("content_type")
    return [perm for perm in found if f"{perm.content_type.app_label}.{perm.codename}" in wanted]


@pytest.fixture
def staff(db, django_user_model) -> APIClient:
    """A staff session with the permissions behind every API scope (not the one to decide approvals)."""
    user = django_user_model.objects.create_user("reviewer", password="x", is_staff=True)
    user.user_permissions.set(api_permissions())
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    return client


@pytest.fixture
def sonnet_price(db):
    """The price of claude-sonnet-4, whatever earlier tests left of the seeded table ($/Mtok)."""
    from quality.models import ModelPrice

    prices = {"input_per_mtok": 3, "output_per_mtok": 15, "cache_read_per_mtok": "0.30", "cache_write_per_mtok": "3.75"}
    return ModelPrice.objects.update_or_create(model="claude-sonnet-4", defaults={"tier": "capable", **prices})[0]
