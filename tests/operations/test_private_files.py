"""Other local accounts get nothing: the embedded Redis `make run` starts asks for a password (that
the server's default REDIS_URL carries), and var/ with what the server writes there (the secret
key, the SQLite database, Redis's password, config and append-only file) is its owner's only."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from redis import Redis
from redis.exceptions import AuthenticationError

from operations.embedded_redis import free_port, wait_until_ready
from tests.conftest import make_key
from tests.services import ROOT, asgi_server


def modes(root: Path) -> dict[str, str]:
    """The permission bits of `root` and everything under it, by path relative to its parent."""
    paths = [root, *root.rglob("*")]
    return {str(path.relative_to(root.parent)): oct(stat.S_IMODE(path.stat().st_mode)) for path in paths}


def private(found: dict[str, str]) -> bool:
    return all(int(mode, 8) & 0o077 == 0 for mode in found.values())


@pytest.fixture
def embedded_redis(tmp_path):
    """`python -m operations.embedded_redis` as `make run` starts it (umask 022, no REDIS_URL),
    its var/ in tmp_path; yields (var dir, port, password)."""
    var, port = tmp_path / "var", free_port()
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    env |= {"TELEMETRY_VAR_DIR": str(var), "EMBEDDED_REDIS_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "operations.embedded_redis"], cwd=ROOT, env=env, umask=0o022, stdout=subprocess.DEVNULL
    )
    try:
        password_file = var / "redis_password"
        for _ in range(300):
            if password_file.exists() and password_file.read_text():
                break
            time.sleep(0.05)
        password = password_file.read_text()
        wait_until_ready(port, password=password)
        yield var, port, password
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_embedded_redis_refuses_a_client_without_its_password_and_the_server_uses_it_by_default(embedded_redis, server_env):
    var, port, password = embedded_redis
    stranger = Redis(port=port)
    for attempt in (lambda: stranger.set("planted", "1"), lambda: stranger.keys("*"), lambda: stranger.config_get("*")):
        with pytest.raises(AuthenticationError):
            attempt()
    owner = Redis(port=port, password=password)
    assert owner.get("planted") is None
    assert owner.config_get("requirepass") == {"requirepass": password}

    # The real server with REDIS_URL unset: the settings' default carries the password.
    env = {key: value for key, value in server_env.items() if key != "REDIS_URL"}
    env |= {"TELEMETRY_VAR_DIR": str(var), "EMBEDDED_REDIS_PORT": str(port)}
    _, raw = make_key("alpha")
    with asgi_server(env) as base:
        assert httpx.get(f"{base}/health").json()["redis"]["status"] == "ok"
        beat = httpx.post(f"{base}/api/v1/agents/alpha/heartbeat", json={}, headers={"Authorization": f"Api-Key {raw}"})
        assert beat.status_code == 200, beat.text
    assert any(b"alpha" in name for name in owner.scan_iter(count=1000)), "the heartbeat is in the embedded Redis"

    found = modes(var)
    assert {"var/redis_password", "var/redis/redis.conf", "var/redis/appendonly.aof"} <= found.keys()
    assert private(found), found


def test_var_the_secret_key_and_the_sqlite_database_are_created_for_their_owner_only(tmp_path):
    """Settings made in a fresh var/ with umask 022, as a first `make run` does, and the database
    written to (SQLite gives its -wal and -shm files, while they exist, the database file's mode)."""
    var = tmp_path / "var"
    env = {key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "DATABASE_URL", "SECRET_KEY")}
    env |= {"TELEMETRY_VAR_DIR": str(var), "DEBUG": "true"}
    write = "from django.db import connection; connection.cursor().execute('CREATE TABLE t (x)')"
    subprocess.run([sys.executable, "manage.py", "shell", "-c", write], cwd=ROOT, env=env, umask=0o022, check=True)
    found = modes(var)
    assert {"var", "var/secret_key", "var/db.sqlite3", "var/redis_password"} <= found.keys()
    assert private(found), found


def test_a_var_dir_made_before_files_were_private_is_named_with_its_fix(tmp_path):
    """`manage.py check` (and so `migrate`, `make run` and `doctor`) warns about an old var/ whose
    secrets others may read, and says how to fix it; once fixed, nothing is said."""
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    var.chmod(0o755)
    (var / "db.sqlite3").write_text("")
    (var / "db.sqlite3").chmod(0o644)
    env = {**os.environ, "TELEMETRY_VAR_DIR": str(var)}

    def check() -> str:
        done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0  # a warning: the server still starts
        return done.stderr + done.stdout

    said = check()
    assert "operations.W001" in said and f"chmod -R go= {var}" in said
    assert str(var / "db.sqlite3") in said and str(var / "secret_key") not in said  # the key was made private
    subprocess.run(["chmod", "-R", "go=", str(var)], check=True)
    assert "operations.W001" not in check()
