from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import validate
from core.ingest import RECORDS_SCOPES, batch_endpoint
from core.openapi import query_parameters
from metrics import query, services
from metrics.schemas import MetricInList, MetricQuery, MetricQueryOut

points = batch_endpoint(services.ingest_metrics, "metrics", MetricInList, "Record metric points (one or a list)")


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
