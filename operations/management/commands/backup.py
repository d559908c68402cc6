from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.progress import progress_bar
from operations import backups


class Command(BaseCommand):
    help = (
        "Back up the database while the server runs: SQLite with its online backup API, PostgreSQL "
        "with pg_dump (custom format). Prints the file written. Redis needs no backup (live state only)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--output", "-o", type=Path, help="file to write (default: var/backups/telemetry-<UTC time>.<ext>)")

    def handle(self, output: Path | None, **options):
        path = output or backups.default_path()
        try:
            with progress_bar("Backing up") as advance:
                backups.backup(path, advance.set)
        except backups.BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Backed up to {path} ({path.stat().st_size:,} bytes)")
