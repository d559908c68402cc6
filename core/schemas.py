"""The field types every app's API schemas share (pydantic): strict objects, UTC timestamps,
identifiers, names and labels, counts, JSON objects."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from core.parsers import loads


def none_to_blank(value: Any) -> Any:
    return "" if value is None else value


def _utc(value: datetime | None) -> datetime | None:
    """In UTC (naive: taken as UTC). PostgreSQL takes offsets up to 15:59 only, Python's go to 23:59."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range in UTC") from None


def _json_object(value: Any) -> Any:
    """A JSON object, also when sent as a string holding one (as local-telemetry's clients do)."""
    if isinstance(value, str):
        try:
            value = loads(value)
        except ValueError:
            raise ValueError("must be a JSON object or a string holding one") from None
    if value is not None and not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    return value


Count = Annotated[int, Field(ge=0, le=2**31 - 1)]  # the range of the columns (PositiveIntegerField)
# Summed into bigint rollups: bounded so that the sums of millions still fit.
Milliseconds = Annotated[int, Field(ge=0, le=10 * 365 * 86_400_000)]  # ten years
Tokens = Annotated[int, Field(ge=0, le=10**12)]
Timestamp = Annotated[datetime, AfterValidator(_utc)]
JsonObject = Annotated[dict[str, Any] | None, BeforeValidator(_json_object)]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Label = Annotated[str, BeforeValidator(none_to_blank), StringConstraints(max_length=200)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=True)
