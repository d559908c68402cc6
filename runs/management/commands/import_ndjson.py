from pathlib import Path

from django.core.management.base import BaseCommand

from core.progress import progress_bar
from runs import importers


class Command(BaseCommand):
    help = (
        "Replay NDJSON records: the SDK's spool files and local-telemetry's raw/events_YYYYMMDD.ndjson. "
        "Idempotent: records stored before count as duplicates. Invalid lines are reported and skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", type=Path, metavar="FILE")

    def handle(self, files: list[Path], **options):
        total = sum(path.stat().st_size for path in files if path.is_file())
        with progress_bar("Importing", total) as advance:
            summary = importers.import_ndjson(files, advance)
        self.stdout.write("\n".join(summary.report()))
