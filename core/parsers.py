"""The API's JSON parser, with a size limit per view (kept apart from core.api: DRF's settings import it)."""

import json

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def parse_json(stream, limit: int):
    """The JSON document in `stream` ({} if empty): 413 beyond `limit` bytes, 400 when malformed
    (NaN included)."""
    raw = stream.read(limit + 1)
    if not raw.strip():
        return {}
    if len(raw) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except ValueError as exc:
        raise exceptions.ParseError(f"Malformed JSON: {exc}") from None


class BoundedJSONParser(JSONParser):
    """JSON bodies up to the view's `max_body_bytes` (default API_MAX_BODY_BYTES); 413 beyond."""

    def parse(self, stream, media_type=None, parser_context=None):
        view = (parser_context or {}).get("view")
        return parse_json(stream, getattr(view, "max_body_bytes", settings.API_MAX_BODY_BYTES))
