"""Agent keys: never kept or logged in plain text through use and refusal (database, sessions,
Redis, server, worker and SDK logs, spool), and revoked or deleted in the admin, refused at once
by every server, their websockets closed."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path

import httpx
import pytest
import websockets.sync.client as ws
from django.contrib.admin.utils import quote
from django.contrib.sessions.models import Session
from django.core import signing
from redis import Redis
from telemetry_client import (
    ApprovalGate,
    CoordinationSignals,
    EventStreamer,
    HeartbeatCoordinator,
    TelemetryClient,
    TelemetryConfig,
)
from websockets.exceptions import ConnectionClosed

from core.models import AgentKey
from core.redis import get_redis
from core.scopes import agent_default
from notifications.models import Delivery, NotificationChannel
from tests.conftest import make_key
from tests.security.world import database_text, key_form, one_good_span
from tests.services import ROOT, asgi_server, celery_processes
from tests.test_scale_out import PLAIN_HTTP_COOKIES, csrf_token, log_in

# --- keys never kept or logged in plain text ----------------------------------------------------


def session_payloads() -> str:
    """The stored sessions' data, unsigned (it is signed and compressed, not encrypted)."""
    texts = []
    for data in Session.objects.values_list("session_data", flat=True):
        payload = data.split(":")[0]
        raw = signing.b64_decode(payload.lstrip(".").encode())
        texts.append((zlib.decompress(raw) if payload.startswith(".") else raw).decode())
    return "\n".join(texts)


def redis_text() -> str:
    """Every entry of every Redis database, whatever its type, as text."""
    lines = []
    for db in get_redis().info("keyspace"):
        redis = Redis.from_url(os.environ["REDIS_URL"], db=int(db.removeprefix("db")))
        for name in redis.scan_iter(count=1000):
            lines.append(f"{name!r}: {redis_entry(redis, name)!r}")
    return "\n".join(lines)


def redis_entry(redis: Redis, name: bytes):
    kind = redis.type(name)
    if kind == b"string":
        return redis.get(name)
    if kind == b"hash":
        return redis.hgetall(name)
    if kind == b"stream":
        return redis.xrange(name)
    if kind == b"zset":
        return redis.zrange(name, 0, -1)
    if kind == b"set":
        return redis.smembers(name)
    return redis.lrange(name, 0, -1)


def add_key_in_admin(browser: httpx.Client, name: str) -> str:
    """A key made on the admin's add form; the raw key from the message that shows it once."""
    form = browser.get("/admin/core/agentkey/add/")
    fields = {
        "csrfmiddlewaretoken": csrf_token(form.text),
        "name": name,
        "agents": name,
        "scopes": agent_default(),
        "_save": "Save",
    }
    added = browser.post("/admin/core/agentkey/add/", data=fields, follow_redirects=True)
    return re.search(rf"The API key for {name} is: (\S+)\. ", added.text).group(1)


def revoke_in_admin(browser: httpx.Client, key: AgentKey) -> None:
    page = browser.get(f"/admin/core/agentkey/{quote(key.pk)}/change/")
    revoked = browser.post(page.url, data=key_form(key, revoked="on", csrfmiddlewaretoken=csrf_token(page.text)))
    assert revoked.status_code == 302, revoked.text


def delete_in_admin(browser: httpx.Client, key: AgentKey) -> None:
    page = browser.get(f"/admin/core/agentkey/{quote(key.pk)}/delete/")
    deleted = browser.post(page.url, data={"post": "yes", "csrfmiddlewaretoken": csrf_token(page.text)})
    assert deleted.status_code == 302, deleted.text


def use_through_the_sdk(base: str, raw_key: str, spool: Path) -> None:
    """What an agent does with its key: runs, events, usage, heartbeats, signals, an approval, a stream."""
    client = TelemetryClient(TelemetryConfig(api_url=base, api_key=raw_key, spool_dir=spool, flush_interval=0.05))
    with client.track_run("alpha", "translate") as run:
        run.log_event("step", {"n": 1})
    client.record_llm_usage("alpha", "claude-sonnet-4", input_tokens=10)
    assert client.flush(timeout=20)
    heartbeat = HeartbeatCoordinator(memory=client)
    heartbeat.start_heartbeat("alpha")
    heartbeat.beat(status="working", progress=0.5)
    CoordinationSignals(memory=client, agent_id="alpha").signal("go", target_agent="alpha-2")
    assert CoordinationSignals(memory=client, agent_id="alpha-2").wait_for_signal("go", timeout=10) is not None
    gate = ApprovalGate(memory=client, agent_id="alpha")
    answer = gate.request_approval("deploy", {"diff": "+1 line"}, timeout=1)
    assert not answer.approved
    assert not gate.respond_to_approval(answer.request_id, True, "alpha")  # refused: agents cannot decide
    assert EventStreamer(memory=client).publish_event("custom.keys", {"n": 1})
    heartbeat.stop_heartbeat()
    client.close(timeout=10)


def test_keys_are_kept_and_logged_only_as_prefix_and_hash_through_use_and_refusal(
    server_env, tmp_path, django_user_model, caplog
):
    """Keys made by the command and in the admin, used by the SDK, over HTTP and a websocket, and
    refused (wrong, unknown, malformed, revoked): afterwards no table, session, Redis entry, server
    or worker log (at DEBUG), SDK log or spool holds the secret part of any."""
    for sdk_logger in ("telemetry_client", "httpx", "httpcore"):  # the SDK and its HTTP client
        caplog.set_level(logging.DEBUG, logger=sdk_logger)
    env = {**server_env, **PLAIN_HTTP_COOKIES, "LOG_LEVEL": "DEBUG"}
    logs = {"server log": tmp_path / "server.log", "worker log": tmp_path / "worker.log"}
    made = subprocess.run(
        [sys.executable, "manage.py", "create_agent_key", "alpha", "--agents", "alpha", "alpha-*"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    command_key = made.stdout.strip()
    assert made.stdout == f"{command_key}\n" and command_key not in made.stderr  # printed once, and only there
    django_user_model.objects.create_superuser("root", password="pw")
    NotificationChannel.objects.create(name="reviewers", kind="email", target="ops@example.com", topics=["approval.requested"])
    with celery_processes(env, beat=False, log=logs["worker log"]), asgi_server(env, log=logs["server log"]) as base:
        feed_url = base.replace("http", "ws") + "/ws/live/"
        with httpx.Client(base_url=base) as browser:
            log_in(browser, "root", "pw")
            admin_key = add_key_in_admin(browser, "beta")
            use_through_the_sdk(base, command_key, tmp_path / "spool")
            beta = {"Authorization": f"Bearer {admin_key}"}
            traced = httpx.post(f"{base}/v1/traces", json=one_good_span(uuid.uuid4().hex, "beta"), headers=beta)
            assert traced.status_code == 200 and "rejectedSpans" not in traced.text
            assert httpx.get(f"{base}/metrics", headers=beta).status_code == 403  # no metrics:read
            with ws.connect(feed_url, additional_headers=beta, open_timeout=10) as feed:
                assert json.loads(feed.recv(10))["type"] == "ready"
            revoke_in_admin(browser, AgentKey.objects.get(name="beta"))
        prefix, _, secret = command_key.partition(".")
        refused = [
            beta,
            {"Authorization": f"Api-Key {prefix}.{secret[::-1]}"},
            {"Authorization": f"Api-Key nope.{secret}"},
            {"Authorization": "Api-Key"},
        ]
        assert [httpx.get(f"{base}/api/v1/runs", headers=headers).status_code for headers in refused] == [401] * 4
        with ws.connect(feed_url, additional_headers=beta, open_timeout=10) as feed:
            assert json.loads(feed.recv(10))["error"]["code"] == "invalid_key"
        revoked_sdk = TelemetryClient(TelemetryConfig(api_url=base, api_key=admin_key, spool_dir=tmp_path / "spool-beta"))
        revoked_sdk.start_run("beta", "translate")
        revoked_sdk.close(timeout=1)  # refused: the run stays in its spool
        for _ in range(300):  # the worker mails the reviewers about the approval request
            if Delivery.objects.filter(status="delivered").exists():
                break
            time.sleep(0.1)
    kept = {
        "database": database_text(),
        "sessions": session_payloads(),
        "redis": redis_text(),
        **{name: path.read_text(errors="replace") for name, path in logs.items()},
        "SDK log": caplog.text,
        "SDK spool": "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("spool*/**/*") if p.is_file()),
    }
    for raw in (command_key, admin_key):
        assert [name for name, text in kept.items() if raw.partition(".")[2] in text] == [], "a key in plain text"
    # The dumps hold what they should: what may be kept of the keys, and the traffic.
    for key in AgentKey.objects.all():
        assert key.prefix in kept["database"] and key.hashed_key in kept["database"]
    assert "Unauthorized: /api/v1/runs" in kept["server log"]
    assert '"POST /api/v1/ingest HTTP/1.1" 200' in kept["server log"]
    assert "Approval needed: deploy for alpha" in kept["worker log"]
    assert "401" in kept["SDK log"] and "invalid_key" in kept["SDK log"]
    assert AgentKey.objects.get(name="beta").last_used_at is not None


# --- revocation at once -------------------------------------------------------------------------


def test_a_key_revoked_or_deleted_in_the_admin_is_refused_at_once_by_every_server_and_its_websockets_close(
    server_env, django_user_model
):
    """Two web processes on one database and Redis, each having remembered the keys: the very next
    request after the admin's reply is refused on both, on the sync (DRF) and the async path,
    and the websocket the key holds open on the other process is closed."""
    env = {**server_env, **PLAIN_HTTP_COOKIES}
    keys = {name: make_key(name) for name in ("alpha", "gamma")}
    django_user_model.objects.create_superuser("root", password="pw")
    with asgi_server(env) as one, asgi_server(env) as two, httpx.Client(base_url=one) as browser:
        log_in(browser, "root", "pw")

        def answers(name: str) -> list[int]:
            headers = {"Authorization": f"Api-Key {keys[name][1]}"}
            return [
                response.status_code
                for base in (one, two)
                for response in (
                    httpx.get(f"{base}/api/v1/runs", headers=headers),
                    httpx.post(f"{base}/api/v1/agents/{name}/heartbeat", json={}, headers=headers),
                )
            ]

        for name, (key, raw) in keys.items():
            assert answers(name) == [200] * 4
            assert list(get_redis().scan_iter(match=f"*agent-key*{key.prefix}")), "the servers answer from the key cache"
            with ws.connect(
                two.replace("http", "ws") + "/ws/live/", additional_headers={"Authorization": f"Api-Key {raw}"}
            ) as feed:
                assert json.loads(feed.recv(10))["type"] == "ready"
                (revoke_in_admin if name == "alpha" else delete_in_admin)(browser, key)
                assert answers(name) == [401] * 4
                with pytest.raises(ConnectionClosed) as closed:
                    feed.recv(10)
                assert closed.value.rcvd.code == 4401, name
    assert AgentKey.objects.get(pk=keys["alpha"][0].pk).revoked
    assert not AgentKey.objects.filter(pk=keys["gamma"][0].pk).exists()
