"""Exports as CSV, JSON or XLSX, row by row (a million rows never sit in memory): for the admin's
actions, the analytics page and `telemetry export`. Each app describes what it exports as a Kind."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any

from django.db import models
from django.db.models import QuerySet

CHUNK = 2000
FORMATS = {
    "csv": "text/csv",
    "json": "application/json",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def model_record(obj: models.Model) -> dict[str, Any]:
    return {field.attname: getattr(obj, field.attname) for field in obj._meta.concrete_fields}


@dataclass(frozen=True)
class Kind:
    """What can be exported: its rows, newest first, and how a row becomes a dict."""

    name: str
    columns: list[str]
    queryset: Callable[[], QuerySet]
    row: Callable[[models.Model], dict[str, Any]]
    moment: str  # the field a period filters on


def model_columns(model: type[models.Model]) -> list[str]:
    return [field.attname for field in model._meta.concrete_fields]


def rows(kind: Kind, queryset: QuerySet | None = None) -> Iterator[dict[str, Any]]:
    for obj in (kind.queryset() if queryset is None else queryset).iterator(chunk_size=CHUNK):
        yield kind.row(obj)


# Text starting with one of these is a formula to a spreadsheet (or may start one: tab and carriage
# return, as OWASP's CSV injection advice lists them). Numbers are not text: -3 stays a number.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """A value for CSV or a spreadsheet cell: objects as JSON, times without their zone for XLSX."""
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, Decimal):
        return float(value)
    return value


def _csv_cell(value: Any) -> Any:
    """A CSV field: text a spreadsheet would run as a formula gets an apostrophe in front, so that
    it opens as the text it is (CSV has no types: the apostrophe is the only way to say so)."""
    value = _cell(value)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_lines(columns: list[str], records: Iterable[dict[str, Any]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(columns)
    for record in records:
        yield writer.writerow([_csv_cell(record.get(column)) for column in columns])


def json_chunks(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    """A JSON array, one element at a time."""
    yield "["
    for index, record in enumerate(records):
        yield ("," if index else "") + json.dumps(record, default=str)
    yield "]\n"


def write_xlsx(sheets: dict[str, tuple[list[str], Iterable[dict[str, Any]]]], out: IO[bytes] | str) -> None:
    """A workbook with one sheet per entry ({title: (columns, records)}), written as it goes."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    for title, (columns, records) in sheets.items():
        sheet = book.create_sheet(title[:31])
        sheet.append(columns)
        for record in records:
            sheet.append([_spreadsheet(sheet, record.get(column)) for column in columns])
    book.save(out)


def _spreadsheet(sheet, value: Any) -> Any:
    from openpyxl.cell import WriteOnlyCell

    value = _cell(value)
    if hasattr(value, "tzinfo") and value.tzinfo is not None:
        return value.replace(tzinfo=None)  # spreadsheets have no time zones: UTC, as stored
    if isinstance(value, str) and len(value) > 32_000:
        value = value[:32_000]  # a cell holds at most 32,767 characters
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        # A cell typed as text is never run, and keeps the text as it was sent; openpyxl would
        # make a formula of a string starting with "=".
        cell = WriteOnlyCell(sheet, value)
        cell.data_type = "s"
        return cell
    return value


def write(kind: Kind, fmt: str, out: IO, queryset: QuerySet | None = None, progress: Callable[[], None] | None = None) -> None:
    """Export `kind` (all, or `queryset`) as `fmt` to `out` (text for csv/json, bytes for xlsx)."""

    def counted() -> Iterator[dict[str, Any]]:
        for record in rows(kind, queryset):
            yield record
            if progress:
                progress()

    if fmt == "xlsx":
        write_xlsx({kind.name: (kind.columns, counted())}, out)
        return
    chunks = csv_lines(kind.columns, counted()) if fmt == "csv" else json_chunks(counted())
    for chunk in chunks:
        out.write(chunk)
