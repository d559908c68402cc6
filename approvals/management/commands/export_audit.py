import sys

from django.core.management.base import BaseCommand

from approvals import audit


class Command(BaseCommand):
    help = (
        "Write the approvals audit log as NDJSON, one entry a line with its prev_hash and hash, so it "
        "can be verified elsewhere (docs/approvals.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--output", "-o", help="a file to write (default: standard output)")

    def handle(self, output: str | None = None, **options):
        stream = open(output, "w", encoding="utf-8") if output else sys.stdout  # noqa: SIM115 - closed below
        try:
            count = 0
            for line in audit.export_lines():
                stream.write(line + "\n")
                count += 1
        finally:
            if output:
                stream.close()
        self.stderr.write(f"Exported {count} audit entries.")
