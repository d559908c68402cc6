import json

from django.core.management.base import BaseCommand, CommandError
from rich.console import Console
from rich.table import Table

from operations import doctor

STYLES = {doctor.OK: "green", doctor.WARN: "yellow", doctor.FAIL: "bold red"}


class Command(BaseCommand):
    help = (
        "Validate this installation: configuration, database (settings, integrity, migrations), Redis "
        "(version, eviction policy), Celery worker and beat, channel layer, clock skew. Exits 1 on any FAIL."
    )
    requires_system_checks = []  # the configuration check runs them and reports what they find
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print the checks as JSON")

    def handle(self, **options):
        results = doctor.run_all()
        if options["json"]:
            self.stdout.write(json.dumps([check.to_dict() for check in results], indent=2))
        else:
            table = Table(title="Installation check", title_justify="left")
            for column in ("check", "status", "detail"):
                table.add_column(column, overflow="fold")
            for check in results:
                table.add_row(check.name, f"[{STYLES[check.status]}]{check.status}[/]", check.detail)
            Console(file=self.stdout, width=140).print(table)
        failed = [check.name for check in results if check.status == doctor.FAIL]
        if failed:
            raise CommandError(f"{len(failed)} check(s) failed: {', '.join(failed)}")
