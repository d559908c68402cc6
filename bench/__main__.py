"""`make bench`: every benchmark, each in its own process (Django is set up once per process).

python -m bench [NAME ...] [--db sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from tests.services import postgres_bin_dir

BENCHMARKS = [
    "ingest",
    "single_writes",
    "sdk",
    "live",
    "coordination",
    "approvals",
    "reports",
    "metrics",
    "delivery",
    "load",
    "footprint",
]
NO_DATABASE = {"live", "footprint"}  # measured once, on the first database (footprint: on make run's SQLite)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", default=BENCHMARKS, help=f"of {', '.join(BENCHMARKS)}")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    databases = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if "postgres" in databases and postgres_bin_dir() is None:
        print("!!! no PostgreSQL binaries: the PostgreSQL figures are skipped", file=sys.stderr)
        databases.remove("postgres")
    failed = 0
    for name in args.names:
        for db in databases[:1] if name in NO_DATABASE else databases:
            failed |= subprocess.run([sys.executable, "-m", f"bench.{name}", "--db", db], check=False).returncode
    sys.exit(failed)


if __name__ == "__main__":
    main()
