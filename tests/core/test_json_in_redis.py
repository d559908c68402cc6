"""Nothing in Redis is a pickle: whoever can write to it must not be able to run code in the web
process. Remembered agent keys and the Django cache (sessions, rate limits) are JSON, and a pickle
written where a key's entry goes is never loaded: the key is checked against the database."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from core.authentication import _cache_name, authenticate_key_async, checked_key
from core.redis import get_redis
from tests.conftest import key_client, make_key

pytestmark = pytest.mark.django_db


def test_a_remembered_keys_entry_is_json_of_its_fields():
    expiry = timezone.now() + timedelta(days=1)
    key, raw = make_key("alpha", agents=["alpha", "beta-*"], scopes=["runs:read"], expiry_date=expiry)
    checked_key(raw)  # asks the database, records the use, writes the entry

    entry = json.loads(get_redis().get(_cache_name(raw)))

    key.refresh_from_db()
    assert entry == {
        "digest": hashlib.sha256(raw.encode()).hexdigest(),
        "key": {
            "id": key.pk,
            "prefix": key.prefix,
            "name": "alpha",
            "expiry_date": expiry.isoformat(),
            "agents": ["alpha", "beta-*"],
            "scopes": ["runs:read"],
            "last_used_at": key.last_used_at.isoformat(),
        },
    }


class Payload:
    """Unpickled, it makes a directory: proof that the pickle ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


@pytest.mark.parametrize("path", ["sync", "async"])
def test_a_pickle_in_place_of_a_keys_entry_is_not_run_and_the_database_answers(path, tmp_path):
    key, raw = make_key("alpha")
    checked_key(raw)
    ran = tmp_path / "ran"
    get_redis().set(_cache_name(raw), pickle.dumps((hashlib.sha256(raw.encode()).hexdigest(), Payload(str(ran)))))

    found = checked_key(raw) if path == "sync" else async_to_sync(authenticate_key_async)(raw)

    assert not ran.exists()
    assert found.pk == key.pk
    assert json.loads(get_redis().get(_cache_name(raw)))["key"]["id"] == key.pk  # written afresh, as JSON
    assert key_client(raw).get("/api/v1/runs").status_code == 200


def test_the_django_cache_holds_json_sessions_and_rate_limits(client, django_user_model, settings):
    settings.API_RATE_LIMIT = "100/min"
    user = django_user_model.objects.create_user("reviewer", password="x", is_staff=True, is_superuser=True)
    client.force_login(user)
    assert client.get("/admin/").status_code == 200
    _, raw = make_key("alpha")
    assert key_client(raw).get("/api/v1/runs").status_code == 200

    values = {name.decode(): json.loads(get_redis().get(name)) for name in get_redis().scan_iter("cache:*")}

    session = next(value for name, value in values.items() if "sessions" in name)
    assert session["_auth_user_id"] == str(user.pk)
    assert len(next(value for name, value in values.items() if "throttle" in name)) == 1
