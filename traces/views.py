from __future__ import annotations

import zlib

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import describe, error_body
from core.authentication import key_with_scope
from core.ingest import RECORDS_SCOPES
from core.otlp import JSON, PROTOBUF
from core.parsers import PayloadTooLarge
from core.throttling import count_request_sync
from traces import otlp, services
from traces.models import Span
from traces.schemas import SpanOut, TraceOut


class TraceDetail(APIView):
    """GET /api/v1/traces/<trace_id>: a trace's spans, oldest first (404 when none was received)."""

    required_scopes = RECORDS_SCOPES

    @extend_schema(responses=TraceOut, summary="A trace's spans, oldest first")
    def get(self, request, trace_id: str):
        spans = Span.objects.filter(trace_id=trace_id.lower()).select_related("run").order_by("start_time", "id")
        found = [
            SpanOut.model_validate(span).model_copy(update={"run_event_id": span.run.event_id if span.run else None})
            for span in spans
        ]
        if not found:
            raise exceptions.NotFound(f"No spans of trace '{trace_id}' were received.")
        return Response(TraceOut(trace_id=trace_id.lower(), spans=found).model_dump(mode="json"))


@csrf_exempt
@require_POST
def otlp_traces(request):
    """POST /v1/traces: OpenTelemetry's OTLP/HTTP trace export, in protobuf or JSON (optionally
    gzipped), with an agent key holding runs:write (OTEL_EXPORTER_OTLP_HEADERS="Authorization=Api-Key
    <key>"). Spans the key may not record, or that are malformed, are counted in the response's
    partial success; the others are stored."""
    try:
        key = key_with_scope(request, "runs:write")
        count_request_sync(key)
        if request.content_type not in (PROTOBUF, JSON):
            raise exceptions.UnsupportedMediaType(request.content_type, f"Send {PROTOBUF} or {JSON}.")
        spans = otlp.decode(_otlp_body(request), request.content_type)
    except exceptions.APIException as exc:
        wait = getattr(exc, "wait", None)
        return JsonResponse(describe(exc), status=exc.status_code, headers={"Retry-After": str(wait)} if wait else None)
    except otlp.BadRequest as exc:
        return JsonResponse(error_body("invalid", str(exc)), status=400)
    batch = services.ingest_spans(spans, key.may_act_as)
    body = otlp.encode_response(request.content_type, batch.failed, "; ".join(list(batch.errors())[:10]))
    return HttpResponse(body, content_type=request.content_type)


def _otlp_body(request) -> bytes:
    limit = settings.OTLP_MAX_BODY_BYTES
    body = request.read(limit + 1)
    if request.headers.get("Content-Encoding", "").lower() == "gzip":
        try:
            body = zlib.decompressobj(wbits=31).decompress(body, limit + 1)
        except zlib.error as exc:
            raise exceptions.ParseError(f"Not gzip: {exc}") from None
    if len(body) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes (OTLP_MAX_BODY_BYTES), unzipped.")
    return body
