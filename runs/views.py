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

from core.api import LimitOffsetPage, async_endpoint, json_data
from core.ingest import BATCH_RESPONSES, RECORDS_SCOPES, BatchOut, BatchView, batch_response, items_of
from core.permissions import ensure_key_may_act_as
from runs import services
from runs.deliveries import run_deliveries
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
    RunDetailOut,
    RunIn,
    RunInList,
    RunOutList,
    RunPatch,
    UpdatedOut,
    run_json,
)
from runs.services import RunWrite


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


@async_endpoint({"POST": "runs:write"}, {"POST": RunIn}, documented={"POST": (None, CreatedOut)})
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


@async_endpoint({"PATCH": "runs:write"}, {"PATCH": RunPatch}, documented={"PATCH": (None, UpdatedOut)})
async def update_run(request, key, event_id: str, body: RunPatch):
    """Update the 11 editable fields"""
    if not body.model_fields_set:
        raise exceptions.ValidationError({"body": ["No fields to update; editable: " + ", ".join(RunPatch.model_fields)]})
    patched = RunWrite(event_id, key, lambda run, changes: services.update_run(run, body, changes))
    fields = await services.run_writes.write(patched)
    return {"event_id": event_id, "updated": True, "fields_updated": fields}


@async_endpoint({"POST": "runs:write"}, {"POST": CommitIn}, documented={"POST": (None, CommitOut)})
async def associate_commit(request, key, event_id: str, body: CommitIn):
    """Link a run to the git commit it produced"""

    def linked(run: Run, changes: services.RunChanges) -> dict:
        services.associate_commit(run, body, changes)
        return {"status": "success", "event_id": run.event_id, "run_id": run.run_id, "commit_hash": run.git_commit_hash}

    return await services.run_writes.write(RunWrite(event_id, key, linked))


class RunEvents(APIView):
    required_scopes = RECORDS_SCOPES

    @extend_schema(responses=EventOutList, summary="Events of a run, oldest first; ?limit= and ?offset=")
    def get(self, request, event_id: str):
        run = get_object_or_404(Run, event_id=event_id)
        page = LimitOffsetPage(request)
        return page.response([EventOut.model_validate(e).model_dump(mode="json") for e in page.rows(run.events.all())])


@async_endpoint({"POST": "runs:write"}, documented={"POST": (EventInList, BatchOut)})
async def record_events(request, key, event_id: str):
    """Record one event or a list of events"""
    items = items_of(json_data(request, settings.BATCH_MAX_BODY_BYTES), allow_single=True, key="events")
    batch = await services.run_writes.write(RunWrite(event_id, key, lambda run, changes: services.record_events(run, items)))
    return batch_response(request, batch)


@extend_schema_view(post=extend_schema(request=BatchEventInList, responses=BATCH_RESPONSES, summary="Record events of any runs"))
class EventBatch(BatchView):
    required_scopes = RECORDS_SCOPES
    key = "events"
    ingest = staticmethod(services.ingest_events)
