"""What every benchmark needs: real services in a temporary folder and a bounded HTTP load
generator (the server itself starts with tests.services.asgi_server). Loopback only."""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from core.embedded_redis import EmbeddedRedis
from tests.services import ROOT, ThrowawayPostgres, postgres_bin_dir, production_env


@contextmanager
def environment(db: str):
    """Redis and a database of kind `db` (sqlite|postgres) in a temporary folder; yields the env."""
    workdir = Path(tempfile.mkdtemp(prefix="telemetry-bench-"))
    redis = EmbeddedRedis(workdir / "redis").start()
    postgres = None
    env = production_env(
        DJANGO_SETTINGS_MODULE="bench.settings",
        REDIS_URL=redis.url,
        TELEMETRY_VAR_DIR=str(workdir / "var"),
        DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}",
    )
    try:
        if db == "postgres":
            postgres = ThrowawayPostgres(postgres_bin_dir()).start()
            env["DATABASE_URL"] = postgres.url
        os.environ.update(env)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        import django

        django.setup()
        yield env
    finally:
        if postgres:
            postgres.stop()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


class Load:
    """Sends prepared requests with `concurrency` connections until they run out or `seconds` pass.
    `path` is one path for every body, or a list of paths, one per body."""

    def __init__(self, base: str, headers: dict, concurrency: int, seconds: float):
        self.base, self.headers, self.concurrency, self.seconds = base, headers, concurrency, seconds

    def run(self, path: str | list[str], bodies: list[bytes], expect: set[int]) -> dict:
        return asyncio.run(self._run(path, bodies, expect))

    async def _run(self, path: str | list[str], bodies: list[bytes], expect: set[int]) -> dict:
        queue = zip([path] * len(bodies) if isinstance(path, str) else path, bodies, strict=True)
        latencies: list[float] = []
        failures: list[int] = []
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(base_url=self.base, headers=self.headers, limits=limits, timeout=60) as client:
            start = time.perf_counter()
            deadline = start + self.seconds

            async def worker():
                for url, body in queue:
                    if time.perf_counter() > deadline:
                        return
                    sent = time.perf_counter()
                    response = await client.post(url, content=body)
                    latencies.append(time.perf_counter() - sent)
                    if response.status_code not in expect:
                        failures.append(response.status_code)

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
            elapsed = time.perf_counter() - start
        if failures:
            raise RuntimeError(f"{len(failures)} unexpected answers, e.g. {failures[:5]}")
        latencies.sort()
        return {
            "requests": len(latencies),
            "seconds": elapsed,
            "per_second": len(latencies) / elapsed,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        }
