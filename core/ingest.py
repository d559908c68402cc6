"""Batches in: the view every batch endpoint is (a list of items of one kind, per-item results),
and POST /api/v1/ingest, the SDK's transport, whose one ordered batch mixes every kind.

Each app registers the kinds of item it records, in its AppConfig.ready(): the function that
stores a list of them and the schema of one item (its `kind` a literal). The ingest endpoint
hands each run of consecutive items of one kind to that function, in order, without knowing
what the kinds are.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, reduce
from itertools import groupby
from operator import or_
from typing import Annotated

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.http import JsonResponse
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse, extend_schema
from pydantic import BaseModel, Field, RootModel
from rest_framework import exceptions
from rest_framework.views import APIView

from core.api import async_endpoint, error_body, json_data
from core.batch import Batch, BatchResults, MayActAs
from core.group_commit import GroupCommit
from core.permissions import agent_checker, key_checker

Store = Callable[[list, MayActAs], Batch]
# The scopes of every endpoint that records what agents did or reads it back (runs, events, usage,
# feedback, metric points, spans, reports): runs:read to read, runs:write to record.
RECORDS_SCOPES = {"GET": "runs:read", "POST": "runs:write", "PATCH": "runs:write"}
BATCH_RESPONSES = {
    200: OpenApiResponse(description="the batch was read; rejected items are counted in `failed` and listed in `errors`"),
    207: OpenApiResponse(description="with `Prefer: multi-status`: some items rejected; see results"),
}


class BatchOut(BaseModel):
    """The reply to a batch (BatchResults.body), for the OpenAPI schema of the async endpoints."""

    total: int
    inserted: int
    duplicates: int
    failed: int
    errors: list[str]
    results: list[dict]
    updated: int | None = None


MULTI_STATUS = "multi-status"  # the preference (RFC 7240) that asks for 207 when some items are rejected


@dataclass(frozen=True)
class Kind:
    store: Store
    schema: type[BaseModel]  # one item, with its "kind"


KINDS: dict[str, Kind] = {}


def register(kind: str, store: Store, schema: type[BaseModel]) -> None:
    """Items `{"kind": kind, ...}` of an ingest batch are stored by `store`; `schema` (an item
    with its `kind` field) describes them in the OpenAPI document."""
    KINDS[kind] = Kind(store, schema)


def items_of(data, *, allow_single: bool = False, key: str = "runs") -> list:
    """The list a batch body carries: a bare JSON array, or {"<key>": [...]}; capped at BATCH_MAX_ITEMS."""
    if isinstance(data, dict) and key in data and len(data) == 1:
        data = data[key]
    elif allow_single and isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise exceptions.ValidationError({"body": [f'Expected a JSON array of items (or {{"{key}": [...]}}).']})
    if len(data) > settings.BATCH_MAX_ITEMS:
        raise exceptions.ValidationError({"body": [f"At most {settings.BATCH_MAX_ITEMS} items per batch; got {len(data)}."]})
    return data


def prefers_multi_status(request) -> bool:
    """Whether the request sent `Prefer: multi-status` (among other preferences, perhaps)."""
    preferences = request.META.get("HTTP_PREFER", "").split(",")
    return any(p.partition(";")[0].partition("=")[0].strip().lower() == MULTI_STATUS for p in preferences)


def batch_response(request, results: BatchResults) -> JsonResponse:
    """200 with per-item results, the rejected ones counted in `failed` and listed in `errors`:
    local-telemetry's client takes any other status for a failure and sends the batch again. 207
    when some items were rejected and the request asked for it with `Prefer: multi-status`. For
    DRF's views and the async endpoints alike."""
    if not prefers_multi_status(request):
        return JsonResponse(results.body())
    status = 207 if results.failed else 200
    return JsonResponse(results.body(), status=status, headers={"Preference-Applied": MULTI_STATUS})


class BatchView(APIView):
    """POST a batch (a JSON array, or {"<key>": [...]}) to `ingest`; per-item results: 200, or 207
    when some items are rejected and the request sent `Prefer: multi-status`."""

    max_body_bytes = settings.BATCH_MAX_BODY_BYTES
    key = "runs"
    ingest: Callable[[list, MayActAs], BatchResults]

    def post(self, request):
        return batch_response(request, self.ingest(items_of(request.data, key=self.key), agent_checker(request)))


def in_one_transaction(writes: list[Callable[[], BatchResults]]) -> list[BatchResults]:
    """Each write, in order, in one transaction."""
    with transaction.atomic():
        return [write() for write in writes]


# Single items posted to the endpoints of batch_endpoint, each request's with the others'
# arriving meanwhile (core.group_commit).
single_items = GroupCommit(in_one_transaction)


def batch_endpoint(ingest: Callable[[list, MayActAs], BatchResults], key: str, schema: type[BaseModel], summary: str):
    """An endpoint that POSTs one item (a JSON object), or a batch as BatchView takes it, to
    `ingest`, with per-item results as BatchView's. One item is stored with the single items of
    the other requests arriving meanwhile, in one transaction; a batch in a transaction of its own.
    `schema` (a list of items) and `summary` describe it in the OpenAPI schema."""

    async def endpoint(request, principal):
        data = json_data(request, settings.BATCH_MAX_BODY_BYTES)
        write = functools.partial(ingest, items_of(data, allow_single=True, key=key), key_checker(principal))
        if isinstance(data, dict) and key not in data:
            return batch_response(request, await single_items.write(write))
        return batch_response(request, await sync_to_async(write)())

    endpoint.__name__, endpoint.__doc__, endpoint.__module__ = key.replace("-", "_"), summary, ingest.__module__
    return async_endpoint({"POST": RECORDS_SCOPES["POST"]}, documented={"POST": (schema, BatchOut)})(endpoint)


def _kind(item) -> str | None:
    """The item's kind; None when it is no object or its kind no string."""
    kind = item.get("kind") if isinstance(item, dict) else None
    return kind if isinstance(kind, str) else None


def ingest(items: list, may_act_as: MayActAs) -> BatchResults:
    """A mixed, ordered batch, each item `{"kind": ..., ...fields}`. Consecutive items of one kind
    are handled together, in order."""
    results: list[dict | None] = []
    for kind, group in groupby(enumerate(items), key=lambda pair: _kind(pair[1])):
        group = list(group)
        handler = KINDS.get(kind)
        if handler is None:
            known = ", ".join(KINDS)
            message = f"Unknown kind {kind!r}; one of: {known}." if kind else f'Each item needs a "kind", one of: {known}.'
            results += [
                {"index": i, "event_id": None, "status": "rejected", **error_body("invalid_kind", message)} for i, _ in group
            ]
            continue
        for _, item in group:
            del item["kind"]
        batch = handler.store([item for _, item in group], may_act_as)
        for (index, _), result in zip(group, batch.results, strict=True):
            results.append({**result, "index": index})
    return BatchResults(results)


@cache
def ingest_items_schema() -> type[RootModel]:
    """The body of POST /api/v1/ingest: a list of the registered kinds' items."""
    item = Annotated[reduce(or_, (kind.schema for kind in KINDS.values())), Field(discriminator="kind")]

    class IngestItemList(RootModel[list[item]]):
        pass

    return IngestItemList


class IngestSchema(AutoSchema):
    """The request schema is made of the kinds registered, which are known once every app is ready."""

    def get_request_serializer(self):
        return ingest_items_schema()


class Ingest(BatchView):
    """The SDK's transport: one ordered batch of runs, events, run ends, commits, usage, feedback,
    metric points and spans."""

    schema = IngestSchema()
    required_scopes = RECORDS_SCOPES
    key = "items"
    ingest = staticmethod(ingest)

    @extend_schema(responses=BATCH_RESPONSES, summary="Record a mixed, ordered batch")
    def post(self, request):
        return super().post(request)
