from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import validate
from core.ingest import BATCH_RESPONSES, BatchView
from core.openapi import query_parameters
from metrics import query, services
from metrics.schemas import MetricInList, MetricQuery, MetricQueryOut

READ_WRITE = {"GET": "runs:read", "POST": "runs:write", "PATCH": "runs:write"}


@extend_schema_view(
    post=extend_schema(request=MetricInList, responses=BATCH_RESPONSES, summary="Record metric points (one or a list)")
)
class MetricBatch(BatchView):
    required_scopes = READ_WRITE
    key = "metrics"
    allow_single = True
    ingest = staticmethod(services.ingest_metrics)


class MetricQueryView(APIView):
    """GET /api/v1/metrics/query: a metric over time, from the minute rollups."""

    required_scopes = READ_WRITE

    @extend_schema(
        parameters=query_parameters(MetricQuery),
        responses=MetricQueryOut,
        summary="A metric over time: label filters (labels=agent_type:coder), interval buckets, aggregation, "
        "percentiles, moving average, anomalies",
    )
    def get(self, request):
        return Response(query.query(validate(MetricQuery, request.query_params.dict())))
