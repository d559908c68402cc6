from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import validate
from core.ingest import RECORDS_SCOPES, batch_endpoint
from core.openapi import query_parameters
from quality import reports, services
from quality.schemas import (
    FeedbackInList,
    QualityStats,
    RecommendationQuery,
    ReportOut,
    ReportQuery,
    StageQuery,
    TemplateConfidenceOut,
    TemplateFeedbackInList,
    TemplateQuery,
    TierRecommendation,
    UsageInList,
)

usage = batch_endpoint(services.ingest_usage, "usage", UsageInList, "Record LLM calls (one or a list)")
feedback = batch_endpoint(services.ingest_feedback, "feedback", FeedbackInList, "Rate responses (one or a list)")
ratings = batch_endpoint(services.ingest_template_feedback, "ratings", TemplateFeedbackInList, "Rate templates (one or a list)")


class QualityStatsView(APIView):
    required_scopes = RECORDS_SCOPES

    @extend_schema(
        parameters=query_parameters(StageQuery), responses=QualityStats, summary="Quality of a workflow stage's responses"
    )
    def get(self, request):
        query = validate(StageQuery, request.query_params.dict())
        stats = services.quality_stats(query.workflow_name, query.stage_name, query.tier)
        if stats is None:
            raise exceptions.NotFound(
                f"No feedback for {query.workflow_name}/{query.stage_name}" + (f" on {query.tier}." if query.tier else ".")
            )
        return Response(stats.model_dump())


class RecommendationView(APIView):
    required_scopes = RECORDS_SCOPES

    @extend_schema(
        parameters=query_parameters(RecommendationQuery), responses=TierRecommendation, summary="Which tier a stage should use"
    )
    def get(self, request):
        query = validate(RecommendationQuery, request.query_params.dict())
        return Response(services.recommend_tier(query.workflow_name, query.stage_name, query.current_tier).model_dump())


class TemplateConfidenceView(APIView):
    required_scopes = RECORDS_SCOPES

    @extend_schema(
        parameters=query_parameters(TemplateQuery), responses=TemplateConfidenceOut, summary="good / (good + bad) of a template"
    )
    def get(self, request):
        return Response(services.template_confidence(validate(TemplateQuery, request.query_params.dict()).template_id))


class ReportView(APIView):
    """GET /api/v1/reports/<name>: the report `python manage.py telemetry <name> --json` prints."""

    required_scopes = RECORDS_SCOPES

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "days", int, description=f"the last DAYS days, today included (default {reports.DEFAULT_DAYS}; compare: 7)"
            ),
            OpenApiParameter("limit", int, description="show: how many calls (1-1000, default 20)"),
            OpenApiParameter("baseline_model", str, description="savings: the model to compare against"),
        ],
        responses=ReportOut,
        summary="One of the telemetry reports: show, savings, cache-stats, compare, agent-performance, task-routing, "
        "tier1-status, test-status, file-test-status, sonnet-opus-analysis, features",
    )
    def get(self, request, name: str):
        report = reports.REPORTS.get(name)
        if report is None:
            raise exceptions.NotFound(f"No report '{name}'; one of: {', '.join(reports.REPORTS)}.")
        query = validate(ReportQuery, request.query_params.dict())
        arguments = {} if name in reports.WITHOUT_PERIOD else query.model_dump(exclude_none=True)
        if name != "show":
            arguments.pop("limit", None)
        if name != "savings":
            arguments.pop("baseline_model", None)
        return Response(report(**arguments).to_dict())
