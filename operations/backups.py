"""Backups of the database: SQLite through its online backup API (safe while the server writes),
PostgreSQL through pg_dump's custom format. Redis is not backed up: it holds live state only
(heartbeats, signals, streams, the task queue), which the running system rebuilds.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.db import connection

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_DUMP_MAGIC = b"PGDMP"
# Tables `migrate` fills by itself (and beat's schedules, and the model prices a migration seeds):
# rows there do not make a database "in use".
MIGRATE_FILLS = ("django_migrations", "django_content_type", "auth_permission", "django_celery_beat_", "quality_modelprice")

Progress = Callable[[int, int], None]  # (done, total)


class BackupError(Exception):
    pass


def default_path() -> Path:
    suffix = "sqlite3" if connection.vendor == "sqlite" else "pgdump"
    return settings.VAR_DIR / "backups" / f"telemetry-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.{suffix}"


def backup(path: Path, progress: Progress | None = None) -> Path:
    """Write the backup to `path`, readable by this user only (it holds every record, password
    hashes and the channels' signing secrets)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600))
    if connection.vendor == "sqlite":
        _sqlite_copy(settings.DATABASES["default"]["NAME"], path, progress)
    elif connection.vendor == "postgresql":
        _pg_run("pg_dump", "--format=custom", "--no-owner", f"--file={path}")
    else:
        raise BackupError(f"no backup for {connection.vendor} databases")
    return path


def restore(path: Path, progress: Progress | None = None) -> None:
    """Replace the configured database's contents with the backup at `path`."""
    kind = backup_kind(path)
    if kind != connection.vendor:
        raise BackupError(f"{path} is a {kind} backup but the configured database is {connection.vendor}")
    connection.close()
    if kind == "sqlite":
        _sqlite_copy(path, settings.DATABASES["default"]["NAME"], progress)
    else:
        _pg_run("pg_restore", "--clean", "--if-exists", "--no-owner", "--exit-on-error", "--single-transaction", str(path))


def backup_kind(path: Path) -> str:
    with open(path, "rb") as file:
        head = file.read(len(SQLITE_MAGIC))
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(PG_DUMP_MAGIC):
        return "postgresql"
    raise BackupError(f"{path} is neither a SQLite database nor a pg_dump custom-format file")


def holds_data() -> bool:
    """Whether the configured database has rows of its own (beyond what `migrate` puts there)."""
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            if table.startswith(MIGRATE_FILLS):
                continue
            cursor.execute(f"SELECT 1 FROM {connection.ops.quote_name(table)} LIMIT 1")  # noqa: S608 - names from introspection
            if cursor.fetchone():
                return True
    return False


def _sqlite_copy(source: str | Path, target: str | Path, progress: Progress | None) -> None:
    source_db = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    target_db = sqlite3.connect(target, timeout=settings.DATABASES["default"]["OPTIONS"].get("timeout", 20))
    try:
        report = (lambda _, left, total: progress(total - left, total)) if progress else None
        # One step, in one read transaction: in WAL mode writers go on meanwhile. Several steps
        # would start over each time the server writes between two of them.
        with target_db:
            source_db.backup(target_db, pages=-1, progress=report)
    finally:
        source_db.close()
        target_db.close()


def pg_binary(name: str) -> str:
    """pg_dump or pg_restore: from PG_BIN_DIR, the PATH, or Debian's /usr/lib/postgresql/<newest>/bin."""
    candidates = [Path(os.environ["PG_BIN_DIR"]) / name] if os.environ.get("PG_BIN_DIR") else []
    if found := shutil.which(name):
        candidates.append(Path(found))
    versions = [p for p in Path("/usr/lib/postgresql").glob(f"*/bin/{name}") if p.parts[-3].isdigit()]
    candidates += sorted(versions, key=lambda p: int(p.parts[-3]), reverse=True)
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    raise BackupError(f"{name} not found: install the PostgreSQL client (postgresql-client) or set PG_BIN_DIR")


def _pg_run(program: str, *args: str) -> None:
    db = settings.DATABASES["default"]
    options = [f"--dbname={db['NAME']}"]
    options += [f"--{flag}={db[key]}" for flag, key in (("host", "HOST"), ("port", "PORT"), ("username", "USER")) if db.get(key)]
    env = {**os.environ, "PGPASSWORD": db.get("PASSWORD") or os.environ.get("PGPASSWORD", "")}
    for option in ("sslmode", "sslrootcert", "sslcert", "sslkey"):  # what a managed PostgreSQL may require
        if db.get("OPTIONS", {}).get(option):
            env[f"PG{option.upper()}"] = str(db["OPTIONS"][option])
    done = subprocess.run([pg_binary(program), *options, *args], env=env, capture_output=True, text=True)
    if done.returncode:
        raise BackupError(f"{program} failed: {done.stderr.strip()}")
