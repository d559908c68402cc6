"""bench.load's eyes: what the server's processes, Redis and the database hold while the mix
runs, sampled every --report-every s and printed as a line; the memory of each process at start
and end; the soak verdict (the window after warm-up against the last)."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import psutil
import redis

# Soak: medians of the samples in the window after warm-up and in the last one; flat when the
# last exceeds the first by at most max(absolute, relative x first).
WARMUP, WINDOW, SOAK_SECONDS = 0.2, 0.1, 600
MB = 1024 * 1024
SERVER_GROUPS = ["uvicorn master", "uvicorn workers", "celery worker", "celery pool", "celery beat", "redis", "postgres"]
# The process groups in the sample lines, with their headings (others are in the JSON only).
GROUPS = {
    "uvicorn master": "uv.master",
    "uvicorn workers": "uv.workers",
    "celery worker": "cel.worker",
    "celery pool": "cel.pool",
    "celery beat": "cel.beat",
    "redis": "redis",
    "postgres": "postgres",
    "sdk agents": "sdk agents",
    "load generator": "generator",
}
FLAT = {"memory": (20.0, 0.10), "redis keys": (5, 0.01), "db connections": (5, 0.10), "channel-layer channels": (5, 0.10)}


class Probe:
    """What the server's processes, Redis and the database hold. Runs in one thread of its own
    (`self.thread`), so that the database is asked over one connection the count leaves out."""

    def __init__(self, env: dict, db: str):
        self.db = db
        self.sqlite_path = env["DATABASE_URL"].removeprefix("sqlite:///") if db == "sqlite" else None
        self.redis = redis.Redis.from_url(env["REDIS_URL"])
        self.thread = ThreadPoolExecutor(max_workers=1)
        self.me = psutil.Process()
        self.me.cpu_percent()
        self.thread.submit(psutil.cpu_percent).result()  # its first call (per thread) starts the count

    async def ask(self, function):
        return await asyncio.get_running_loop().run_in_executor(self.thread, function)

    def processes(self) -> list[dict]:
        """Every process of this benchmark (this one and its descendants), labelled."""
        found = []
        for process in [self.me, *self.me.children(recursive=True)]:
            try:
                name = label(process, self.me)
                memory = process.memory_full_info().uss if name == "postgres" else process.memory_info().rss
                found.append({"label": name, "pid": process.pid, "mb": memory / MB})
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass  # gone meanwhile (a backend, a pool child), or not ours to read
        return found

    def sample(self) -> dict:
        processes = self.processes()
        groups = defaultdict(float)
        for process in processes:
            groups[process["label"]] += process["mb"]
        return {
            "mb": dict(groups),
            "redis keys": self.redis.dbsize(),
            "stream entries": sum(self.streams().values()),
            "db connections": self.db_connections(processes),
            "channel groups": len(self.redis.pubsub_channels("asgi__group__*")),
            "channel-layer channels": len(self.redis.pubsub_channels("asgi*")),
            "generator cpu %": self.me.cpu_percent(),
            "machine cpu %": psutil.cpu_percent() * psutil.cpu_count(),
        }

    def streams(self) -> dict[str, int]:
        """Entries in each event type's stream (each capped at about EVENT_STREAM_MAXLEN)."""
        from core.streams import STREAM_PREFIX

        keys = list(self.redis.scan_iter(match=f"{STREAM_PREFIX}*", _type="STREAM"))
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.xlen(key)
        return {key.decode().removeprefix(STREAM_PREFIX): length for key, length in zip(keys, pipe.execute(), strict=True)}

    def db_connections(self, processes: list[dict]) -> int:
        if self.db == "postgres":
            from django.db import connection

            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
                )
                return cursor.fetchone()[0]
        handles = 0
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                handles += sum(f.path == self.sqlite_path for f in psutil.Process(process["pid"]).open_files())
        return handles

    def close(self) -> None:
        from django.db import connection

        self.thread.submit(lambda: connection.close()).result()  # the thread's own connection
        self.thread.shutdown()
        self.redis.close()


def label(process: psutil.Process, me: psutil.Process) -> str:
    """The process group of `process`, by its command line and its parent's."""
    if process.pid == me.pid:
        return "load generator"
    command, parent = " ".join(process.cmdline()), process.parent()
    parent_command = " ".join(parent.cmdline()) if parent else ""
    if process.name() == "redis-server":
        return "redis"
    if process.name() == "postgres" or command.startswith("postgres"):
        return "postgres"
    if "-m uvicorn" in command:
        return "uvicorn master"
    if "resource_tracker" in command:
        return "multiprocessing resource tracker"
    if "-m uvicorn" in parent_command:
        return "uvicorn workers"
    if "celery" in command and " worker" in command:
        return "celery pool" if "celery" in parent_command and " worker" in parent_command else "celery worker"
    if "celery" in command and " beat" in command:
        return "celery beat"
    if "bench.load_agent" in command:
        return "sdk agents"
    return process.name()


def sample_columns(sample: dict) -> list[tuple[str, str]]:
    """(heading, value) of each column of a sample line; memory in MB."""
    memory = [(short, f"{sample['mb'][name]:.0f}") for name, short in GROUPS.items() if name in sample["mb"]]
    return [
        ("t s", f"{sample['t']:.0f}"),
        ("req/s", f"{sample['req/s']:.0f}"),
        ("429/s", f"{sample['429/s']:.1f}"),
        *memory,
        ("redis keys", str(sample["redis keys"])),
        ("stream ent.", str(sample["stream entries"])),
        ("db conns", str(sample["db connections"])),
        ("ch.groups", str(sample["channel groups"])),
        ("ch.channels", str(sample["channel-layer channels"])),
        ("watchers", str(sample["watchers connected"])),
        ("gen cpu%", f"{sample['generator cpu %']:.0f}"),
        ("cpu%", f"{sample['machine cpu %']:.0f}"),
    ]


def sample_header(sample: dict) -> str:
    return " ".join(f"{heading:>11}" for heading, _ in sample_columns(sample))


def sample_line(sample: dict) -> str:
    return " ".join(f"{value:>11}" for _, value in sample_columns(sample))


def soak_verdict(samples: list[dict], seconds: float, every: float) -> dict:
    window = max(every, WINDOW * seconds)
    first = [s for s in samples if WARMUP * seconds < s["t"] <= WARMUP * seconds + window]
    last = [s for s in samples if s["t"] > seconds - window]
    items = []
    if not first or not last:
        return {"first": None, "last": None, "items": items}

    def compare(name: str, kind: str, value) -> None:
        before, after = statistics.median(map(value, first)), statistics.median(map(value, last))
        absolute, relative = FLAT[kind]
        allowed = max(absolute, relative * before)
        items.append({"name": name, "first": before, "last": after, "allowed": allowed, "flat": after - before <= allowed})

    for group in SERVER_GROUPS:
        if group in last[0]["mb"]:
            compare(f"memory MB {group}", "memory", lambda s, group=group: s["mb"].get(group, 0.0))
    compare("redis keys", "redis keys", lambda s: s["redis keys"])
    compare("db connections", "db connections", lambda s: s["db connections"])
    compare("channel-layer channels", "channel-layer channels", lambda s: s["channel-layer channels"])
    return {"first": [first[0]["t"], first[-1]["t"]], "last": [last[0]["t"], last[-1]["t"]], "items": items}


def memory_lines(processes: dict) -> list[str]:
    """Each process's memory at start and end; PostgreSQL's processes (backends come and go) as one."""

    def rows(found: list[dict]) -> dict:
        by_process = defaultdict(float)
        for process in found:
            by_process[(process["label"], "all" if process["label"] == "postgres" else process["pid"])] += process["mb"]
        return by_process

    start, end = rows(processes["start"]), rows(processes["end"])
    lines = [f"  memory, MB (RSS; PostgreSQL USS)   {'pid':>8} {'start':>9} {'end':>9}"]
    for name, pid in sorted(start.keys() | end.keys(), key=str):
        before = f"{start[name, pid]:9.1f}" if (name, pid) in start else f"{'-':>9}"
        after = f"{end[name, pid]:9.1f}" if (name, pid) in end else f"{'-':>9}"
        lines.append(f"    {name:32} {pid:>8} {before} {after}")
    return lines


def soak_lines(soak: dict) -> list[str]:
    if not soak["items"]:
        return ["  soak: too few samples for a verdict"]
    lines = [
        f"  soak: medians of the samples {soak['first'][0]:.0f}-{soak['first'][1]:.0f} s (after warm-up) against "
        f"{soak['last'][0]:.0f}-{soak['last'][1]:.0f} s (the last)"
        + ("" if soak["decides"] else f"; informative (only --soak or {SOAK_SECONDS} s and more fail the run on it)")
    ]
    for item in soak["items"]:
        lines.append(
            f"    {'flat   ' if item['flat'] else 'GROWING'}  {item['name']:34} {item['first']:9.1f} -> {item['last']:9.1f}  "
            f"({item['last'] - item['first']:+.1f}, allowed +{item['allowed']:.1f})"
        )
    return lines
