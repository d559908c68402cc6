"""`python manage.py telemetry <subcommand>`: the usage, cost, quality and test reports, as tables or `--json`."""

from __future__ import annotations

import json
import sys
from argparse import ArgumentTypeError
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from rich.console import Console
from rich.table import Table

from core import exports
from core.progress import progress_bar
from quality import reports, rollups
from quality.exports import KINDS

DAYS = {"compare": 7}  # the other reports default to reports.DEFAULT_DAYS


class Command(BaseCommand):
    help = "Reports on runs, LLM usage and cost, quality, tests and the server's features; exports; reset."

    def add_arguments(self, parser):
        subcommands = parser.add_subparsers(dest="subcommand", required=True, metavar="subcommand")
        for name, report in reports.REPORTS.items():
            sub = subcommands.add_parser(name, help=(report.__doc__ or "").split(":")[0].split(".")[0].strip())
            sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
            if name in reports.WITHOUT_PERIOD:
                continue
            sub.add_argument(
                "--days", type=positive, default=DAYS.get(name, reports.DEFAULT_DAYS), help="the last DAYS days, today included"
            )
            if name == "show":
                sub.add_argument("--limit", type=int, default=20)
            if name == "savings":
                sub.add_argument("--baseline-model", help="compare against this model (default: the priciest premium one)")
        sub = subcommands.add_parser("reset", help="delete LLM usage and feedback (with --runs, runs too)")
        sub.add_argument("--runs", action="store_true", help="also delete every run and its events")
        sub.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        sub = subcommands.add_parser("export", help="runs, usage or feedback as CSV, JSON or XLSX")
        sub.add_argument("what", choices=sorted(KINDS))
        sub.add_argument("--format", choices=["csv", "json", "xlsx"], default="csv")
        sub.add_argument("--output", "-o", help="file to write (default: telemetry-<what>-<time>.<format>)")
        sub.add_argument("--days", type=positive, help="only the last DAYS days, today included (default: everything)")
        sub = subcommands.add_parser("rollup", help="recompute the daily rollups reports read (beat does it every minute)")
        sub.add_argument("--rebuild", action="store_true", help="every day, not only the changed ones (after a TIME_ZONE change)")

    def handle(self, subcommand: str, **options):
        self.console = Console(file=self.stdout, width=160, soft_wrap=False)
        if subcommand == "reset":
            return self.reset(options["runs"], options["yes"])
        if subcommand == "export":
            return self.export(options["what"], options["format"], options["output"], options["days"])
        if subcommand == "rollup":
            days = rollups.rebuild() if options["rebuild"] else rollups.refresh()
            return self.stdout.write(f"Recomputed the rollups of {days} day(s).")
        arguments = {} if subcommand in reports.WITHOUT_PERIOD else {"days": options["days"]}
        if subcommand == "show":
            arguments["limit"] = options["limit"]
        if subcommand == "savings":
            arguments["baseline_model"] = options["baseline_model"]
        report = reports.REPORTS[subcommand](**arguments)
        if options["json"]:
            self.stdout.write(json.dumps(report.to_dict(), indent=2))
        else:
            self.print_report(report)

    def print_report(self, report: reports.Report) -> None:
        table = Table(title=report.title, title_justify="left")
        for column in report.columns:
            table.add_column(column, justify="left" if column in TEXT_COLUMNS else "right")
        for row in report.rows:
            table.add_row(*(show(column, value) for column, value in zip(report.columns, row, strict=True)))
        if report.rows:
            self.console.print(table)
        else:
            self.console.print(f"[bold]{report.title}[/bold]: nothing in this period.")
        for name, value in report.summary.items():
            self.console.print(f"  {name.replace('_', ' ')}: {show(name, value)}")
        for note in report.notes:
            self.console.print(f"  [dim]{note}[/dim]")

    def reset(self, include_runs: bool, yes: bool) -> None:
        what = "every LLM usage record and all feedback" + (", and every run with its events" if include_runs else "")
        if not yes:
            if not sys.stdin.isatty():
                raise CommandError(f"This deletes {what}. Add --yes to confirm (no terminal to ask).")
            if input(f"Delete {what}? Type 'yes' to confirm: ").strip().lower() != "yes":
                self.stdout.write("Nothing deleted.")
                return
        deleted = reports.reset(include_runs)
        self.stdout.write("Deleted " + ", ".join(f"{count} {name}" for name, count in deleted.items()) + ".")

    def export(self, what: str, fmt: str, output: str | None, days: int | None) -> None:
        kind = KINDS[what]
        queryset = kind.queryset()
        if days is not None:
            queryset = queryset.filter(**{f"{kind.moment}__gte": rollups.Period.last(days).since})
        path = Path(output or f"telemetry-{what}-{timezone.now():%Y%m%d-%H%M%S}.{fmt}")
        total = queryset.count()
        with progress_bar(f"{what} -> {path}", total) as advance, path.open("wb" if fmt == "xlsx" else "w") as out:
            exports.write(kind, fmt, out, queryset, progress=advance)
        self.stdout.write(f"Wrote {total} {what} to {path}")


def positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ArgumentTypeError(f"a whole number of days, at least 1 (not {value!r})")
    return int(value)


TEXT_COLUMNS = {"time", "agent", "workflow/stage", "model", "tier", "metric", "task type", "workflow", "stage",
                "fallback model", "file", "job type", "feature", "status", "what it serves", "detail"}  # fmt: skip


def show(column: str, value: Any) -> str:
    """A cell: shares and rates as percentages, money with 4 decimals, times to the minute."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and any(word in column for word in ("rate", "share", "change")):
        return f"{value:.1%}"
    if isinstance(value, Decimal):
        return f"{value:,.4f}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, datetime):
        return f"{timezone.localtime(value):%Y-%m-%d %H:%M}"
    return str(value)
