"""Batch ingest with per-item results: validate each item, keep the good ones, store them at once.

Items are identified by their `event_id` (unique on the model): an item whose event_id is
stored already, or repeated in the same batch, is reported as a duplicate and stored once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

import pydantic
from django.db import models, transaction

from core.api import error_body, validation_fields
from core.fastpaths.bulk_insert import Row, db_values, insert_new

MayActAs = Callable[[str], bool]  # whether the request's key may act as this agent


@cache
def _list_of(schema: type[pydantic.BaseModel]) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(list[schema])


def error_text(error: dict) -> str:
    """A rejected item's error in one line: its message and the fields at fault."""
    return f"{error['message']} {error.get('fields', '')}".strip()


class BatchResults:
    """Per-item results (created, updated, duplicate or rejected) and the reply they make."""

    def __init__(self, results: list[dict | None]):
        self.results = results

    def _count(self, status: str) -> int:
        return sum(1 for r in self.results if r and r["status"] == status)

    def errors(self) -> Iterable[str]:
        for r in self.results:
            if r and r["status"] == "rejected":
                yield f"{r['event_id'] or '#' + str(r['index'])}: {error_text(r['error'])}"

    @property
    def failed(self) -> int:
        return self._count("rejected")

    def body(self) -> dict:
        body = {
            "total": len(self.results),
            "inserted": self._count("created"),
            "duplicates": self._count("duplicate"),
            "failed": self.failed,
            "errors": list(self.errors()),
            "results": self.results,
        }
        if updated := self._count("updated"):
            body["updated"] = updated
        return body


class Batch(BatchResults):
    """Validates each item against `schema`; the valid ones wait in `valid` to be stored."""

    def __init__(self, items: list[Any], schema: type[pydantic.BaseModel]):
        super().__init__([None] * len(items))
        self.valid: dict[int, pydantic.BaseModel] = {}
        # The whole list in one call (a tenth less time than an item at a time); when some items
        # fail, the others in one more call and each failed one alone, for its own error.
        try:
            good = _list_of(schema).validate_python(items)
            failed: set[int] = set()
        except pydantic.ValidationError as exc:
            failed = {error["loc"][0] for error in exc.errors(include_url=False, include_input=False)}
            good = _list_of(schema).validate_python([item for index, item in enumerate(items) if index not in failed])
        passed = iter(good)
        for index, item in enumerate(items):
            if index not in failed:
                self.valid[index] = next(passed)
                continue
            try:
                self.valid[index] = schema.model_validate(item)
            except pydantic.ValidationError as exc:
                event_id = item.get("event_id") if isinstance(item, dict) else None
                self._set(index, event_id, "rejected", error_body("invalid", "Invalid item: see fields.", validation_fields(exc)))

    @classmethod
    def of_valid(cls, items: list[pydantic.BaseModel]) -> Batch:
        """A batch of items checked already (each against its schema)."""
        batch = cls([], pydantic.BaseModel)
        batch.results, batch.valid = [None] * len(items), dict(enumerate(items))
        return batch

    def _set(self, index: int, event_id: Any, status: str, error: dict | None = None) -> None:
        result = {"index": index, "event_id": event_id, "status": status}
        if error:
            result.update(error)
        self.results[index] = result

    def reject(self, index: int, code: str, message: str) -> None:
        item = self.valid.pop(index)
        self._set(index, item.event_id, "rejected", error_body(code, message))

    def reject_forbidden_agents(self, may_act_as: MayActAs) -> None:
        """Reject the items naming an agent (`agent_name`) the key may not act as."""
        for index, item in list(self.valid.items()):
            if item.agent_name and not may_act_as(item.agent_name):
                self.reject(index, "agent_forbidden", f"This key may not act as agent '{item.agent_name}'.")

    def updated(self, index: int, changed: bool = True) -> None:
        """An update applied; one that `changed` nothing (a replay) is reported as a duplicate."""
        self._set(index, self.valid[index].event_id, "updated" if changed else "duplicate")

    def store(
        self,
        model: type[models.Model],
        build: Callable[[Any], Row],
        on_stored: Callable[[list[Row]], None] | None = None,
        prepare: Callable[[list[Row]], None] | None = None,
    ) -> None:
        """Insert the valid items (`build` makes each a row); those whose event_id is stored already
        (or earlier in this batch) are duplicates. The database decides, so concurrent batches
        cannot both claim one. `on_stored` gets the rows stored, in the same transaction;
        `prepare`, all the rows to insert, before it."""
        first: dict[str, Row] = {}
        for item in self.valid.values():
            if item.event_id not in first:
                first[item.event_id] = build(item)
        rows = list(first.values())
        values = db_values(model, rows)  # before the transaction: on SQLite it holds the write lock
        if prepare:
            prepare(rows)
        with transaction.atomic():
            stored = insert_new(model, rows, values)
            if on_stored and stored:
                on_stored([first[event_id] for event_id in stored])
        for index, item in self.valid.items():
            created = item.event_id in stored and first.pop(item.event_id, None) is not None
            self._set(index, item.event_id, "created" if created else "duplicate")


def row_of(obj: models.Model) -> Row:
    return {field.attname: getattr(obj, field.attname) for field in obj._meta.concrete_fields}


RETENTION_BATCH = 10_000  # rows per DELETE: short transactions, however much is old


def purge(queryset) -> int:
    """Delete the rows of `queryset` in batches of RETENTION_BATCH; how many."""
    deleted = 0
    while ids := list(queryset.values_list("pk", flat=True)[:RETENTION_BATCH]):
        deleted += queryset.model.objects.filter(pk__in=ids).delete()[0]
    return deleted
