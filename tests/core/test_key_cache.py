"""Checked agent keys are remembered in the cache (no database query per request), forgotten the
moment they change, and the async path gives its database connection back, so waits held open do
not keep one each."""

from __future__ import annotations

import hashlib
import threading
from datetime import timedelta
from unittest import mock

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone
from rest_framework import exceptions

from coordination import heartbeats, signals
from core import streams
from core.authentication import authenticate_key, authenticate_key_async, checked_key, remembered_key
from core.redis import get_redis
from tests.conftest import key_client, make_key
from tests.services import asgi_server, wait_until_held

pytestmark = pytest.mark.django_db

URL = "/api/v1/runs"


def test_a_checked_key_is_answered_without_the_database(django_assert_num_queries):
    key, raw = make_key("alpha")
    checked_key(raw)  # asks the database (and records the use)
    with django_assert_num_queries(0):
        assert checked_key(raw).pk == key.pk


def test_the_async_path_answers_a_remembered_key_from_redis_alone(django_assert_num_queries):
    key, raw = make_key("alpha")
    assert async_to_sync(authenticate_key_async)(raw).pk == key.pk  # asks the database, records the use
    with django_assert_num_queries(0):
        assert async_to_sync(authenticate_key_async)(raw).pk == key.pk
    prefix, _, secret = raw.partition(".")
    with pytest.raises(exceptions.AuthenticationFailed):
        async_to_sync(authenticate_key_async)(f"{prefix}.{secret[::-1]}")


def test_the_async_path_records_use_once_a_minute_and_checks_expiry():
    key, raw = make_key("alpha", expiry_date=timezone.now() + timedelta(hours=1))
    async_to_sync(authenticate_key_async)(raw)
    first_use = type(key).objects.get(pk=key.pk).last_used_at
    with mock.patch("django.utils.timezone.now", return_value=first_use + timedelta(minutes=2)):
        async_to_sync(authenticate_key_async)(raw)
    assert type(key).objects.get(pk=key.pk).last_used_at == first_use + timedelta(minutes=2)
    later = first_use + timedelta(hours=2)
    with mock.patch("django.utils.timezone.now", return_value=later), pytest.raises(exceptions.AuthenticationFailed) as refused:
        async_to_sync(authenticate_key_async)(raw)
    assert refused.value.detail.code == "expired_key"


def test_revoking_a_key_refuses_it_at_once():
    key, raw = make_key("alpha")
    client = key_client(raw)
    assert client.get(URL).status_code == 200
    key.revoked = True
    key.save()
    assert client.get(URL).status_code == 401


def test_deleting_a_key_refuses_it_at_once():
    key, raw = make_key("alpha")
    client = key_client(raw)
    assert client.get(URL).status_code == 200
    key.delete()
    assert client.get(URL).status_code == 401


def test_a_scope_taken_away_shows_at_once():
    key, raw = make_key("alpha")
    client = key_client(raw)
    assert client.get(URL).status_code == 200
    key.scopes = ["coordination:read"]
    key.save()
    response = client.get(URL)
    assert response.status_code == 403 and response.json()["error"]["code"] == "missing_scope"


def test_a_remembered_prefix_with_another_secret_is_refused():
    _, raw = make_key("alpha")
    checked_key(raw)
    prefix, _, secret = raw.partition(".")
    with pytest.raises(exceptions.AuthenticationFailed):
        checked_key(f"{prefix}.{secret[::-1]}")


def test_a_remembered_key_still_expires():
    _, raw = make_key("alpha", expiry_date=timezone.now() + timedelta(hours=1))
    checked_key(raw)
    later = timezone.now() + timedelta(hours=2)
    with mock.patch("django.utils.timezone.now", return_value=later), pytest.raises(exceptions.AuthenticationFailed) as refused:
        checked_key(raw)
    assert refused.value.detail.code == "expired_key"


def test_a_key_this_process_read_is_known_by_the_sha1_of_its_redis_entry():
    key, raw = make_key("alpha")
    assert remembered_key(raw) is None
    async_to_sync(authenticate_key_async)(raw)  # asks the database, writes the entry
    known, check = remembered_key(raw)
    assert known.pk == key.pk
    assert check.sha1 == hashlib.sha1(get_redis().get(check.entry)).hexdigest()  # noqa: S324
    prefix, _, secret = raw.partition(".")
    assert remembered_key(f"{prefix}.{secret[::-1]}") is None
    later = timezone.now() + timedelta(hours=2)
    _, expiring_raw = make_key("beta", expiry_date=timezone.now() + timedelta(hours=1))
    async_to_sync(authenticate_key_async)(expiring_raw)
    with mock.patch("django.utils.timezone.now", return_value=later), pytest.raises(exceptions.AuthenticationFailed):
        remembered_key(expiring_raw)


BEAT = "/api/v1/agents/alpha/heartbeat"


@pytest.mark.parametrize(
    ("change", "answer"), [("revoked", 401), ("deleted", 401), ("scope taken away", 403), ("entry expired", 200)]
)
def test_a_beat_on_a_key_known_here_that_changed_is_checked_afresh_and_records_nothing_when_refused(change, answer):
    """A heartbeat acts on a key this process knows without reading Redis first; its script
    checks the key's entry before writing. Whatever changed the key, the beat is answered as the
    key is now, and a refused beat leaves the agent's state and the event stream as they were."""
    key, raw = make_key("alpha")
    client = key_client(raw)
    assert client.post(BEAT, {"status": "first"}, format="json").status_code == 200
    _, check = remembered_key(raw)
    if change == "revoked":
        key.revoked = True
        key.save()
    elif change == "deleted":
        key.delete()
    elif change == "scope taken away":
        key.scopes = ["coordination:read"]
        key.save()
    else:
        get_redis().delete(check.entry)
    assert remembered_key(raw)[1] == check  # this process still has the entry it read
    response = client.post(BEAT, {"status": "second"}, format="json")
    assert response.status_code == answer, response.content
    recorded = ["first", "second"] if answer == 200 else ["first"]
    assert [event["data"]["status"] for event in streams.recent("agent.heartbeat", 10)] == recorded
    assert async_to_sync(heartbeats.status)("alpha").status == recorded[-1]
    if answer == 200:  # known again, by the entry now in Redis
        assert remembered_key(raw)[1].sha1 == hashlib.sha1(get_redis().get(check.entry)).hexdigest()  # noqa: S324


def test_a_signal_sent_on_a_key_known_here_that_was_revoked_is_refused_and_never_delivered():
    key, raw = make_key("alpha")
    client = key_client(raw)
    signal = {"signal_type": "go", "target_agent": "beta"}
    assert client.post("/api/v1/signals", signal, format="json").status_code == 201
    assert remembered_key(raw) is not None
    key.revoked = True
    key.save()
    assert client.post("/api/v1/signals", {**signal, "signal_type": "stop"}, format="json").status_code == 401
    assert [event["data"]["signal_type"] for event in streams.recent("signal.sent", 10)] == ["go"]
    assert [pending["signal_type"] for pending in async_to_sync(signals.pending)("beta")] == ["go"]


def test_without_redis_the_database_answers(settings):
    from operations.embedded_redis import free_port

    _, raw = make_key("alpha")
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{free_port()}/0"}}
    assert key_client(raw).get(URL).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_the_async_path_gives_the_database_connection_back():
    _, raw = make_key("alpha")
    held = []

    def request_thread():
        from django.db import connection

        authenticate_key(raw)  # not remembered yet: asks the database
        held.append(connection.connection)

    thread = threading.Thread(target=request_thread)
    thread.start()
    thread.join()
    assert held == [None]


def test_held_waits_keep_no_database_connection(server_env, tmp_path):
    """More waits than the database pool has connections (PostgreSQL; SQLite has no pool), each
    with a key of its own (so each asks the database), and the server still answers at once."""
    keys = {name: {"Authorization": f"Api-Key {make_key(name)[1]}"} for name in ["source", *(f"w{i}" for i in range(5))]}
    answers = {}

    def wait(base: str, name: str):
        body = {"signal_type": "go", "timeout": 15}
        answers[name] = httpx.post(f"{base}/api/v1/signals/receive", json=body, headers=keys[name], timeout=30)

    log = tmp_path / "web.log"
    env = {**server_env, "DATABASE_POOL_MAX_SIZE": "2", "LOG_LEVEL": "DEBUG"}
    with asgi_server(env, log=log) as base, httpx.Client(base_url=base, timeout=30) as source:
        source.headers.update(keys["source"])
        waiters = [threading.Thread(target=wait, args=(base, name)) for name in keys if name != "source"]
        for waiter in waiters:
            waiter.start()
        for name in keys.keys() - {"source"}:
            wait_until_held(log, f"signals:{name}")
        beat = source.post("/api/v1/agents/source/heartbeat", json={"status": "running"})
        assert beat.status_code == 200  # an exhausted pool waits 10 s, then 500
        sent = source.post("/api/v1/signals", json={"signal_type": "go"}).json()
        for waiter in waiters:
            waiter.join(timeout=20)
    got = {name: answer.json()["signal"]["signal_id"] for name, answer in answers.items()}
    assert got == dict.fromkeys(keys.keys() - {"source"}, sent["signal_id"])
