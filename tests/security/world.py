"""What the security tests share: the personas, alpha's secret and names, a span export, a row of a
model the admin shows, a key's admin form, and the database as text (a refused request changes none)."""

from __future__ import annotations

from django.db import connection

from core.models import AgentKey
from tests.runs.factories import otlp_json

# The operator is staff with every view permission and no other; the reviewer, staff who may see and
# decide approval requests and nothing else (docs/operations.md, "Who may do what").
PERSONAS = ["anonymous", "key_a", "key_b", "reader", "operator", "reviewer", "superuser"]
READ_SCOPES = ["runs:read", "coordination:read", "approvals:read", "streams:read"]
MARKER = "for-alpha-eyes-only"  # in alpha's approval requests and signals: key B must never see it
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
STREAM = "custom.matrix"


def one_good_span(trace_id: str, agent: str = "alpha") -> dict:
    export = otlp_json(trace_id, agent)
    del export["resourceSpans"][0]["scopeSpans"][0]["spans"][1]  # the malformed one
    return export


def admin_object(model) -> object:
    found = model._default_manager.order_by("pk").first()
    assert found is not None, f"the matrix needs a row of {model.__name__}: make one in the world fixture"
    return found


def as_text(value) -> str:
    return bytes(value).decode("latin-1") if isinstance(value, bytes | memoryview) else str(value)


def database_text() -> str:
    """Every column of every row of every table, one line a row, in a stable order."""
    lines = []
    with connection.cursor() as cursor:
        for table in sorted(connection.introspection.table_names(cursor)):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 - our own table names
            lines += sorted(f"{table}: " + " | ".join(as_text(value) for value in row) for row in cursor.fetchall())
    return "\n".join(lines)


def key_form(key: AgentKey, **changes) -> dict:
    """The admin's change form of `key` as it stands, with `changes`."""
    fields = {"name": key.name, "agents": "\n".join(key.agents), "scopes": key.scopes, "expiry_date_0": "", "expiry_date_1": ""}
    return {**fields, "_save": "Save", **changes}
