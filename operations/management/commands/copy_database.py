from django.core.management.base import BaseCommand, CommandError

from core.progress import progress_bar
from operations import backups, copying


class Command(BaseCommand):
    help = (
        "Copy every row of another database (e.g. the SQLite one under var/) into the configured one "
        "(e.g. PostgreSQL, through DATABASE_URL), which must be migrated and empty. Stop web, worker "
        "and beat first."
    )

    def add_arguments(self, parser):
        parser.add_argument("source", help="the database to copy, as a URL: sqlite:////abs/path/db.sqlite3 or postgres://...")

    def handle(self, source: str, **options):
        if backups.holds_data():
            raise CommandError("The configured database holds data already: copy into a new, migrated one.")
        alias = copying.open_source(source)
        try:
            copying.check_migrated(alias)
            total = sum(copying.count_rows(alias).values())
        except copying.CopyError as exc:
            raise CommandError(str(exc)) from exc
        except Exception as exc:  # an unreadable source: say what it is, not a traceback
            raise CommandError(f"Cannot read {source}: {exc}") from exc
        with progress_bar("Copying", total) as advance:
            copied = copying.copy_everything(alias, advance)
        for label, count in copied.items():
            if count:
                self.stdout.write(f"{count:>10}  {label}")
        self.stdout.write(f"Copied {sum(copied.values())} rows. Next: python manage.py doctor.")
