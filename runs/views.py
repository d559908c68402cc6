from __future__ import annotations

from django.conf import settings
from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import LimitOffsetPage, validate
from core.ingest import BATCH_RESPONSES, BatchView, items_of
from core.openapi import query_parameters
from core.permissions import ensure_may_act_as
from runs import quality, reports, services
from runs.filters import RunFilter
from runs.models import Run
from runs.schemas import (
    BatchEventInList,
    CommitIn,
    CommitOut,
    CreatedOut,
    EventInList,
    EventOut,
    EventOutList,
    FeedbackInList,
    QualityStats,
    RecommendationQuery,
    ReportOut,
    ReportQuery,
    RunIn,
    RunInList,
    RunOut,
    RunOutList,
    RunPatch,
    StageQuery,
    TemplateConfidenceOut,
    TemplateFeedbackInList,
    TemplateQuery,
    TierRecommendation,
    UpdatedOut,
    UsageInList,
    run_json,
)

READ_WRITE = {"GET": "runs:read", "POST": "runs:write", "PATCH": "runs:write"}


def writable_run(request, event_id: str) -> Run:
    run = get_object_or_404(Run, event_id=event_id)
    ensure_may_act_as(request, run.agent_name)
    return run


class RunListCreate(GenericAPIView):
    required_scopes = READ_WRITE
    queryset = Run.objects.all()
    filter_backends = [DjangoFilterBackend]
    filterset_class = RunFilter

    @extend_schema(
        operation_id="runs_list", responses=RunOutList, summary="Runs, newest first; ?limit= (1-1000, default 100) and ?offset="
    )
    def get(self, request):
        page = LimitOffsetPage(request)
        return page.response([run_json(run) for run in page.rows(self.filter_queryset(self.get_queryset()))])

    @extend_schema(request=RunIn, responses={201: CreatedOut, 200: CreatedOut}, summary="Record a run (idempotent on event_id)")
    def post(self, request):
        data = validate(RunIn, request.data)
        ensure_may_act_as(request, data.agent_name)
        run, created = services.create_run(data)
        if created:
            return Response({"status": "created", "event_id": run.event_id, "run_id": run.run_id}, status=status.HTTP_201_CREATED)
        return Response({"status": "duplicate", "event_id": data.event_id, "message": "Event already exists (idempotent)"})


@extend_schema_view(post=extend_schema(request=RunInList, responses=BATCH_RESPONSES, summary="Record up to 1000 runs"))
class RunBatch(BatchView):
    required_scopes = READ_WRITE
    ingest = staticmethod(services.ingest_runs)


class RunDetail(APIView):
    required_scopes = READ_WRITE

    @extend_schema(responses=RunOut)
    def get(self, request, event_id: str):
        return Response(run_json(get_object_or_404(Run, event_id=event_id)))

    @extend_schema(request=RunPatch, responses=UpdatedOut, summary="Update the 11 editable fields")
    def patch(self, request, event_id: str):
        run = writable_run(request, event_id)
        patch = validate(RunPatch, request.data)
        if not patch.model_fields_set:
            raise exceptions.ValidationError({"body": ["No fields to update; editable: " + ", ".join(RunPatch.model_fields)]})
        fields = services.update_run(run, patch)
        return Response({"event_id": run.event_id, "updated": True, "fields_updated": fields})


class AssociateCommit(APIView):
    required_scopes = READ_WRITE

    @extend_schema(request=CommitIn, responses=CommitOut, summary="Link a run to the git commit it produced")
    def post(self, request, event_id: str):
        run = writable_run(request, event_id)
        services.associate_commit(run, validate(CommitIn, request.data))
        return Response({"status": "success", "event_id": run.event_id, "run_id": run.run_id, "commit_hash": run.git_commit_hash})


class RunEvents(APIView):
    required_scopes = READ_WRITE
    max_body_bytes = settings.BATCH_MAX_BODY_BYTES

    @extend_schema(responses=EventOutList, summary="Events of a run, oldest first; ?limit= and ?offset=")
    def get(self, request, event_id: str):
        run = get_object_or_404(Run, event_id=event_id)
        page = LimitOffsetPage(request)
        return page.response([EventOut.model_validate(e).model_dump(mode="json") for e in page.rows(run.events.all())])

    @extend_schema(request=EventInList, responses=BATCH_RESPONSES, summary="Record one event or a list of events")
    def post(self, request, event_id: str):
        batch = services.record_events(writable_run(request, event_id), items_of(request.data, allow_single=True, key="events"))
        return Response(batch.body(), status=batch.status_code)


@extend_schema_view(post=extend_schema(request=BatchEventInList, responses=BATCH_RESPONSES, summary="Record events of any runs"))
class EventBatch(BatchView):
    required_scopes = READ_WRITE
    key = "events"
    ingest = staticmethod(services.ingest_events)


@extend_schema_view(
    post=extend_schema(request=UsageInList, responses=BATCH_RESPONSES, summary="Record LLM calls (one or a list)")
)
class UsageBatch(BatchView):
    required_scopes = READ_WRITE
    key = "usage"
    allow_single = True
    ingest = staticmethod(quality.ingest_usage)


@extend_schema_view(
    post=extend_schema(request=FeedbackInList, responses=BATCH_RESPONSES, summary="Rate responses (one or a list)")
)
class FeedbackBatch(BatchView):
    required_scopes = READ_WRITE
    key = "feedback"
    allow_single = True
    ingest = staticmethod(quality.ingest_feedback)


@extend_schema_view(
    post=extend_schema(request=TemplateFeedbackInList, responses=BATCH_RESPONSES, summary="Rate templates (one or a list)")
)
class TemplateFeedbackBatch(BatchView):
    required_scopes = READ_WRITE
    key = "ratings"
    allow_single = True
    ingest = staticmethod(quality.ingest_template_feedback)


class QualityStatsView(APIView):
    required_scopes = READ_WRITE

    @extend_schema(
        parameters=query_parameters(StageQuery), responses=QualityStats, summary="Quality of a workflow stage's responses"
    )
    def get(self, request):
        query = validate(StageQuery, request.query_params.dict())
        stats = quality.quality_stats(query.workflow_name, query.stage_name, query.tier)
        if stats is None:
            raise exceptions.NotFound(
                f"No feedback for {query.workflow_name}/{query.stage_name}" + (f" on {query.tier}." if query.tier else ".")
            )
        return Response(stats.model_dump())


class RecommendationView(APIView):
    required_scopes = READ_WRITE

    @extend_schema(
        parameters=query_parameters(RecommendationQuery), responses=TierRecommendation, summary="Which tier a stage should use"
    )
    def get(self, request):
        query = validate(RecommendationQuery, request.query_params.dict())
        return Response(quality.recommend_tier(query.workflow_name, query.stage_name, query.current_tier).model_dump())


class TemplateConfidenceView(APIView):
    required_scopes = READ_WRITE

    @extend_schema(
        parameters=query_parameters(TemplateQuery), responses=TemplateConfidenceOut, summary="good / (good + bad) of a template"
    )
    def get(self, request):
        return Response(quality.template_confidence(validate(TemplateQuery, request.query_params.dict()).template_id))


class ReportView(APIView):
    """GET /api/v1/reports/<name>: the report `python manage.py telemetry <name> --json` prints."""

    required_scopes = READ_WRITE

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
