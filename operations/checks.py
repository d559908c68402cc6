"""System checks (`manage.py check`, `migrate`, `doctor`) for the installation's own files."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core import checks

PRIVATE = ["secret_key", "redis_password", "db.sqlite3", "db.sqlite3-wal", "db.sqlite3-shm", "redis", "backups"]


def readable_by_others(var_dir: Path) -> list[Path]:
    """var/ and what it holds that others may read: a var/ made before its files were private."""
    paths = [var_dir, *(var_dir / name for name in PRIVATE)]
    return [path for path in paths if path.exists() and path.stat().st_mode & 0o077]


@checks.register(checks.Tags.security)
def private_var_dir(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    exposed = readable_by_others(Path(settings.VAR_DIR))
    if not exposed:
        return []
    names = ", ".join(str(path) for path in exposed)
    return [
        checks.Warning(
            f"Other users of this machine may read {names} (the secret key, the database or Redis's password).",
            hint=f"chmod -R go= {settings.VAR_DIR}",
            id="operations.W001",
        )
    ]
