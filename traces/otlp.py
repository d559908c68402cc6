"""The OTLP/HTTP trace receiver's decoding: an ExportTraceServiceRequest, in protobuf
(application/x-protobuf) or OTLP's JSON (application/json), as the span items traces.services
stores, and the response OTLP expects in the same encoding.

Protobuf is read into the JSON form (google.protobuf.json_format), so one walk serves both; the
two differ only in ids: base64 there, hex in OTLP/JSON. A span's agent is its resource's
`telemetry.agent_name` attribute, else its `service.name`.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse

from core.otlp import INT64, PROTOBUF
from core.parsers import holds_nul, loads
from traces.models import SpanKind, SpanStatus
from traces.services import RUN_ATTRIBUTE

# OTLP's enums, by number (OTLP/JSON) and by name (protobuf's JSON form may use either).
KINDS = {0: SpanKind.INTERNAL, 1: SpanKind.INTERNAL, 2: SpanKind.SERVER, 3: SpanKind.CLIENT, 4: SpanKind.PRODUCER,
         5: SpanKind.CONSUMER, "SPAN_KIND_UNSPECIFIED": SpanKind.INTERNAL}  # fmt: skip
KINDS.update({f"SPAN_KIND_{kind.name}": kind for kind in SpanKind})
STATUSES = {0: SpanStatus.UNSET, 1: SpanStatus.OK, 2: SpanStatus.ERROR}
STATUSES.update({f"STATUS_CODE_{status.name}": status for status in SpanStatus})
AGENT_ATTRIBUTE = "telemetry.agent_name"


class BadRequest(ValueError):
    pass


def decode(body: bytes, content_type: str) -> list[dict[str, Any]]:
    """The request's spans as span items; BadRequest when the body is not an export request."""
    if content_type == PROTOBUF:
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise BadRequest(f"Not an ExportTraceServiceRequest in protobuf: {exc}") from None
        data = MessageToDict(request, use_integers_for_enums=True)
        if holds_nul(data):  # as core.parsers.loads refuses it in JSON
            raise BadRequest("A string holds the NUL character, which the database cannot store.")
        return spans_of(data, ids=_from_base64)
    try:
        data = loads(body)
    except ValueError as exc:
        raise BadRequest(f"Not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("The body is not an ExportTraceServiceRequest (a JSON object).")
    try:
        return spans_of(data, ids=lambda value: value)
    except (AttributeError, TypeError, ValueError) as exc:  # a part of the wrong shape: a list for an object...
        raise BadRequest(f"Not an ExportTraceServiceRequest in OTLP/JSON: {type(exc).__name__}: {exc}") from None


def encode_response(content_type: str, rejected: int, message: str) -> bytes:
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    if content_type == PROTOBUF:
        return response.SerializeToString()
    return json.dumps(MessageToDict(response)).encode()


def _from_base64(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        return value  # left as sent: the span's validation refuses it


def _time(nanos: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(nanos) / 1e9, UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def value_of(any_value: dict[str, Any]) -> Any:
    """An OTLP AnyValue as plain JSON."""
    if not isinstance(any_value, dict):
        return None
    if "stringValue" in any_value:
        return any_value["stringValue"]
    if "intValue" in any_value:
        value = int(any_value["intValue"])
        if value not in INT64:
            raise ValueError("an intValue is outside OTLP's 64-bit range")
        return value
    if "doubleValue" in any_value:
        return float(any_value["doubleValue"])
    if "boolValue" in any_value:
        return bool(any_value["boolValue"])
    if "arrayValue" in any_value:
        return [value_of(item) for item in any_value["arrayValue"].get("values", [])]
    if "kvlistValue" in any_value:
        return attributes_of(any_value["kvlistValue"].get("values", []))
    return any_value.get("bytesValue")


def attributes_of(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    return {pair["key"]: value_of(pair.get("value", {})) for pair in pairs or [] if isinstance(pair, dict) and "key" in pair}


def spans_of(data: dict[str, Any], ids) -> list[dict[str, Any]]:
    spans = []
    for resource_spans in data.get("resourceSpans") or []:
        resource = attributes_of((resource_spans.get("resource") or {}).get("attributes", []))
        service = str(resource.get("service.name") or "")
        agent = str(resource.get(AGENT_ATTRIBUTE) or service)
        for scope_spans in resource_spans.get("scopeSpans") or []:
            for span in scope_spans.get("spans") or []:
                attributes = attributes_of(span.get("attributes", []))
                status = span.get("status") or {}
                spans.append(
                    {
                        "trace_id": ids(span.get("traceId", "")),
                        "span_id": ids(span.get("spanId", "")),
                        "parent_span_id": ids(span.get("parentSpanId", "")),
                        "name": span.get("name", ""),
                        "span_kind": KINDS.get(span.get("kind", 0), span.get("kind")),
                        "status": STATUSES.get(status.get("code", 0), status.get("code")),
                        "status_message": status.get("message", ""),
                        "start_time": _time(span.get("startTimeUnixNano")),
                        "end_time": _time(span.get("endTimeUnixNano")),
                        "agent_name": agent,
                        "service_name": service,
                        "attributes": attributes,
                        "events": [
                            {
                                "name": event.get("name", ""),
                                "timestamp": _time(event.get("timeUnixNano")),
                                "attributes": attributes_of(event.get("attributes", [])),
                            }
                            for event in span.get("events") or []
                        ],
                        "run_event_id": attributes.get(RUN_ATTRIBUTE),
                    }
                )
    return spans
