from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import LimitOffsetPage, async_endpoint, validate
from core.ingest import BATCH_RESPONSES, RECORDS_SCOPES, BatchView, batch_response, items_of
from core.permissions import ensure_key_may_act_as, ensure_may_act_as
from runs import services
from runs.deliveries import run_deliveries
from runs.filters import RunFilter
from runs.models import Run
from runs.schemas import (
    BatchEventInList,
    CommitIn,
    CommitOut,
    EventInList,
    EventOut,
    EventOutList,
    RunDetailOut,
    RunIn,
    RunInList,
    RunOutList,
    RunPatch,
    run_json,
)


def writable_run(request, event_id: str) -> Run:
    run = get_object_or_404(Run, event_id=event_id)
    ensure_may_act_as(request, run.agent_name)
    return run


class RunList(GenericAPIView):
    required_scopes = RECORDS_SCOPES
    queryset = Run.objects.all()
    filter_backends = [DjangoFilterBackend]
    filterset_class = RunFilter

    @extend_schema(
        operation_id="runs_list", responses=RunOutList, summary="Runs, newest first; ?limit= (1-1000, default 100) and ?offset="
    )
    def get(self, request):
        page = LimitOffsetPage(request)
        return page.response([run_json(run) for run in page.rows(self.filter_queryset(self.get_queryset()))])


@async_endpoint({"POST": "runs:write"}, {"POST": RunIn})
async def create_run(request, key, body: RunIn):
    """Record a run (idempotent on event_id)

    201 with `status` "created", or 200 with "duplicate" when a run with this event_id exists."""
    ensure_key_may_act_as(key, body.agent_name)
    if await services.run_creates.write(body) == "created":
        return JsonResponse({"status": "created", "event_id": body.event_id, "run_id": body.run_id}, status=201)
    return {"status": "duplicate", "event_id": body.event_id, "message": "Event already exists (idempotent)"}


@extend_schema_view(post=extend_schema(request=RunInList, responses=BATCH_RESPONSES, summary="Record up to 1000 runs"))
class RunBatch(BatchView):
    required_scopes = RECORDS_SCOPES
    ingest = staticmethod(services.ingest_runs)


class RunDetail(APIView):
    required_scopes = RECORDS_SCOPES

    @extend_schema(responses=RunDetailOut)
    def get(self, request, event_id: str):
        run = get_object_or_404(Run, event_id=event_id)
        return Response({**run_json(run), "deliveries": run_deliveries(run)})


@async_endpoint({"PATCH": "runs:write"}, {"PATCH": RunPatch})
async def update_run(request, key, event_id: str, body: RunPatch):
    """Update the 11 editable fields"""
    if not body.model_fields_set:
        raise exceptions.ValidationError({"body": ["No fields to update; editable: " + ", ".join(RunPatch.model_fields)]})
    fields = await services.run_updates.write(services.Patch(event_id, body, key))
    return {"event_id": event_id, "updated": True, "fields_updated": fields}


class AssociateCommit(APIView):
    required_scopes = RECORDS_SCOPES

    @extend_schema(request=CommitIn, responses=CommitOut, summary="Link a run to the git commit it produced")
    def post(self, request, event_id: str):
        run = writable_run(request, event_id)
        services.associate_commit(run, validate(CommitIn, request.data))
        return Response({"status": "success", "event_id": run.event_id, "run_id": run.run_id, "commit_hash": run.git_commit_hash})


class RunEvents(APIView):
    required_scopes = RECORDS_SCOPES
    max_body_bytes = settings.BATCH_MAX_BODY_BYTES

    @extend_schema(responses=EventOutList, summary="Events of a run, oldest first; ?limit= and ?offset=")
    def get(self, request, event_id: str):
        run = get_object_or_404(Run, event_id=event_id)
        page = LimitOffsetPage(request)
        return page.response([EventOut.model_validate(e).model_dump(mode="json") for e in page.rows(run.events.all())])

    @extend_schema(request=EventInList, responses=BATCH_RESPONSES, summary="Record one event or a list of events")
    def post(self, request, event_id: str):
        batch = services.record_events(writable_run(request, event_id), items_of(request.data, allow_single=True, key="events"))
        return batch_response(request, batch)


@extend_schema_view(post=extend_schema(request=BatchEventInList, responses=BATCH_RESPONSES, summary="Record events of any runs"))
class EventBatch(BatchView):
    required_scopes = RECORDS_SCOPES
    key = "events"
    ingest = staticmethod(services.ingest_events)
