from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import validate
from core.ingest import BATCH_RESPONSES, RECORDS_SCOPES, BatchView
from core.openapi import query_parameters
from metrics import query, services
from metrics.schemas import MetricInList, MetricQuery, MetricQueryOut


@extend_schema_view(
    post=extend_schema(request=MetricInList, responses=BATCH_RESPONSES, summary="Record metric points (one or a list)")
)
class MetricBatch(BatchView):
    required_scopes = RECORDS_SCOPES
    key = "metrics"
    allow_single = True
    ingest = staticmethod(services.ingest_metrics)


class MetricQueryView(APIView):
    """GET /api/v1/metrics/query: a metric over time, from the minute rollups."""

    required_scopes = RECORDS_SCOPES

    @extend_schema(
        parameters=query_parameters(MetricQuery),
        responses=MetricQueryOut,
        summary="A metric over time: label filters (labels=agent_type:coder), interval buckets, aggregation, "
        "percentiles, moving average, anomalies",
    )
    def get(self, request):
        return Response(query.query(validate(MetricQuery, request.query_params.dict())))
