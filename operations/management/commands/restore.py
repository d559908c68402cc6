from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.progress import progress_bar
from operations import backups


class Command(BaseCommand):
    help = (
        "Restore a backup made by `backup` into the configured database, replacing what it holds. "
        "Stop web, worker and beat first; afterwards run `migrate` and `doctor`."
    )
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="a file written by `manage.py backup`")
        parser.add_argument("--yes", action="store_true", help="replace a database that holds data without asking")

    def handle(self, path: Path, yes: bool, **options):
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        try:
            backups.backup_kind(path)
            if backups.holds_data() and not yes:
                try:
                    answer = input("The database holds data, which the backup will replace. Type 'yes' to go on: ")
                except EOFError:
                    raise CommandError("The database holds data and there is no one to ask: pass --yes.") from None
                if answer.strip().lower() != "yes":
                    raise CommandError("Nothing restored.")
            with progress_bar("Restoring") as advance:
                backups.restore(path, advance.set)
        except backups.BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Restored {path}. Next: python manage.py migrate, then python manage.py doctor.")
