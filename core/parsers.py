"""The API's JSON parser, with a size limit per view (kept apart from core.api: DRF's settings import it)."""

import json
import math
from typing import Any

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import BaseParser


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


# How deep arrays and objects may nest in a body: deeper is no agent's data, and pydantic writes
# out no more than about 250 levels (a deeper document would be stored, then never read back).
MAX_DEPTH = 100
CONTAINERS = (dict, list)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text[:20]} is too large for a number")
    return value


def holds_nul(data: Any) -> bool:
    """Whether a string in `data` (a value or an object's key) holds NUL."""
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _deeper_than(data: Any, limit: int) -> bool:
    """Whether arrays and objects nest in `data` more than `limit` levels deep (level by level,
    without recursion)."""
    level = [data] if type(data) in CONTAINERS else []
    for _ in range(limit):
        if not level:
            return False
        level = [
            child for item in level for child in (item.values() if type(item) is dict else item) if type(child) in CONTAINERS
        ]
    return bool(level)


def loads(raw: bytes | str) -> Any:
    """JSON as the API takes it; ValueError for malformed JSON, NaN and Infinity, a number too
    large for a float, nesting deeper than MAX_DEPTH, and the NUL character in a string
    (PostgreSQL stores no NUL in text or jsonb: it would fail there, and the API behaves the
    same on every database)."""
    too_deep = f"arrays and objects nested more than {MAX_DEPTH} levels deep"
    try:
        data = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite)
    except RecursionError:  # far deeper: the parser's own limit
        raise ValueError(too_deep) from None
    if _deeper_than(data, MAX_DEPTH):
        raise ValueError(too_deep)
    escaped, zero = (b"\\u0000", b"\0") if isinstance(raw, bytes) else ("\\u0000", "\0")
    if (escaped in raw or zero in raw) and holds_nul(data):  # (a UTF-16 or -32 body holds zero bytes)
        raise ValueError("a string holds the NUL character (\\u0000)")
    return data


def parse_json(stream, limit: int):
    """The JSON document in `stream` ({} if empty): 413 beyond `limit` bytes, 400 when `loads`
    refuses it."""
    raw = stream.read(limit + 1)
    if not raw.strip():
        return {}
    if len(raw) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
    try:
        return loads(raw)
    except ValueError as exc:
        raise exceptions.ParseError(f"Invalid JSON: {exc}") from None


class BoundedJSONParser(BaseParser):
    """JSON bodies up to the view's `max_body_bytes` (default API_MAX_BODY_BYTES); 413 beyond.

    Not a JSONParser: for those DRF reads `request.body`, which refuses a body over
    DATA_UPLOAD_MAX_MEMORY_SIZE with Django's HTML 400 before this parser could answer 413."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        view = (parser_context or {}).get("view")
        return parse_json(stream, getattr(view, "max_body_bytes", settings.API_MAX_BODY_BYTES))
