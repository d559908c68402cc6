from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.progress import progress_bar
from runs import importers


class Command(BaseCommand):
    help = (
        "Import a local-telemetry SQLite database (db/telemetry.sqlite): its runs, run events and commits. "
        "Idempotent: runs keep their event_id, so importing again stores nothing twice."
    )

    def add_arguments(self, parser):
        parser.add_argument("database", type=Path, metavar="DB")

    def handle(self, database: Path, **options):
        try:
            tables = importers.local_telemetry_tables(database)
        except importers.NotImportable as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(", ".join(f"{table}: {rows} rows" for table, rows in tables.items()))
        with progress_bar("Importing", sum(tables.values())) as advance:
            summary = importers.import_local_telemetry(database, advance)
        self.stdout.write("\n".join(summary.report()))
