"""What every report is made of: a title, columns, rows, a summary and notes; and the sums and
prices they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Q, Sum

from quality.models import ModelPrice, ModelTier
from quality.services import MILLION
from runs.selectors import RunStatus

DEFAULT_DAYS = 30


@dataclass
class Report:
    title: str
    columns: list[str]
    rows: list[list[Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "summary": {name: _plain(value) for name, value in self.summary.items()},
            "rows": [{column: _plain(value) for column, value in zip(self.columns, row, strict=True)} for row in self.rows],
            "notes": self.notes,
        }


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def ratio(part: float | None, whole: float | None) -> float | None:
    return round(part / whole, 4) if part is not None and whole else None


def money(value: Decimal | None) -> Decimal:
    return (value or Decimal(0)).quantize(Decimal("0.0001"))


def rollup_sum(field: str, **where) -> Sum:
    """The sum of a rollup's `field` over the rows matching `where`; 0 when none do."""
    return Sum(field, filter=Q(**where), default=0)


TOKEN_SUMS = {
    "calls": rollup_sum("call_count"),
    "input": rollup_sum("input_tokens_sum"),
    "output": rollup_sum("output_tokens_sum"),
    "cache_read": rollup_sum("cache_read_tokens_sum"),
    "cache_write": rollup_sum("cache_write_tokens_sum"),
    "spent": Sum("cost_sum"),
}
ENDED = ~Q(status=RunStatus.RUNNING)


def priced(sums: dict[str, Any], price: ModelPrice) -> Decimal:
    """What the token sums would cost at `price`."""
    pairs = [
        (sums["input"], price.input_per_mtok),
        (sums["output"], price.output_per_mtok),
        (sums["cache_read"], price.cache_read_per_mtok),
        (sums["cache_write"], price.cache_write_per_mtok),
    ]
    return sum((Decimal(tokens or 0) * per_mtok for tokens, per_mtok in pairs), Decimal(0)) / MILLION


def baseline_price(model: str | None = None) -> ModelPrice | None:
    """The model `savings` compares against: the one named, or the priciest premium model."""
    prices = ModelPrice.objects.all()
    if model:
        return prices.filter(model=model).first()
    return prices.filter(tier=ModelTier.PREMIUM).order_by("-output_per_mtok", "-input_per_mtok").first()
