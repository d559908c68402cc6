"""Where benchmark figures are kept (bench/results/, not committed) and how a module is run alone."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main(name: str, run: Callable[[str], dict], report: Callable[[dict], str]) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    result = run(parser.parse_args().db)
    print(report(result), flush=True)
    save(name, result)


def save(name: str, result: dict) -> Path:
    """Keep `result` as bench/results/<name>-<database>-<UTC time>.json."""
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = RESULTS / f"{name}-{result['database']}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2))
    return path
