"""Idle memory of `make run`: the Makefile's own recipe and Procfile (tests.services.make_run) in a
temporary var/ (SQLite, the embedded Redis, web on a free loopback port), left idle IDLE_SECONDS
after /health says worker and beat ran their tick; then Rss and Pss (/proc/<pid>/smaps_rollup)
of every process under make: make itself, honcho and the Procfile's processes with theirs.
Target: under 500 MB RSS in all (issue 28). RSS counts a page every process maps, PSS shares it
out; make run's own database is SQLite, whatever --db says."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import psutil

from tests.services import ROOT, make_run

IDLE_SECONDS = 20.0
TARGET_RSS_MB = 500


def procfile() -> dict[str, str]:
    """The Procfile's commands by name, as honcho hands them to `sh -c`."""
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {command: name for name, _, command in (line.partition(": ") for line in lines if line.strip())}


def megabytes(pid: int) -> tuple[float, float]:
    """(Rss, Pss) of process `pid` in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    return int(fields["Rss"].split()[0]) / 1024, int(fields["Pss"].split()[0]) / 1024


def processes(make: psutil.Process) -> list[dict]:
    """Each process under `make` (itself included): which Procfile process it belongs to (or
    honcho, or `make run` for make and its shell), its command, Rss and Pss."""
    commands = procfile()
    found = []
    for process in [make, *make.children(recursive=True)]:
        command = process.cmdline()
        shell = next((ancestor for ancestor in [process, *process.parents()] if ancestor.cmdline()[-1] in commands), None)
        rss, pss = megabytes(process.pid)
        found.append(
            {
                "process": commands[shell.cmdline()[-1]] if shell else "honcho" if "honcho" in command[1] else "make run",
                "pid": process.pid,
                "command": " ".join(command),
                "rss_mb": rss,
                "pss_mb": pss,
            }
        )
    return found


def run(db: str) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="telemetry-bench-"))
    try:
        with make_run(workdir / "var", workdir / "make-run.log") as (make, _, _):
            time.sleep(IDLE_SECONDS)
            found = processes(psutil.Process(make.pid))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    names = sorted({process["process"] for process in found})
    return {
        "database": "sqlite",
        "idle_seconds": IDLE_SECONDS,
        "processes": found,
        "by_process": {
            name: {
                "rss_mb": sum(process["rss_mb"] for process in found if process["process"] == name),
                "pss_mb": sum(process["pss_mb"] for process in found if process["process"] == name),
            }
            for name in names
        },
        "rss_mb": sum(process["rss_mb"] for process in found),
        "pss_mb": sum(process["pss_mb"] for process in found),
        "target_rss_mb": TARGET_RSS_MB,
    }


def report(result: dict) -> str:
    lines = [f"make run idle memory ({result['idle_seconds']:.0f} s after ready; SQLite, embedded Redis)"]
    lines += [f"  {'process':9s} {'pid':>7s} {'RSS MB':>7s} {'PSS MB':>7s}  command"]
    lines += [
        f"  {row['process']:9s} {row['pid']:7d} {row['rss_mb']:7.1f} {row['pss_mb']:7.1f}  {row['command'][:90]}"
        for row in sorted(result["processes"], key=lambda row: (row["process"], row["pid"]))
    ]
    lines += [f"  {name:17s} {row['rss_mb']:7.1f} {row['pss_mb']:7.1f}  in all" for name, row in result["by_process"].items()]
    verdict = "under" if result["rss_mb"] < result["target_rss_mb"] else "OVER"
    lines.append(
        f"  {'total':17s} {result['rss_mb']:7.1f} {result['pss_mb']:7.1f}  "
        f"RSS {verdict} the target of {result['target_rss_mb']} MB"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    from bench.results import main

    main("footprint", run, report)
