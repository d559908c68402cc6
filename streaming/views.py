"""The streams API: publish, read back, inspect, trim, delete, and a blocking consume that holds
no thread while it waits (an async view on the asyncio Redis client)."""

from __future__ import annotations

import re
import time

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import APIView

from approvals import selectors as approvals
from core import events, quotas, streams
from core.api import async_endpoint, bounded_int, validate
from core.overload import exempt_from_shedding
from core.scopes import permissions_for
from core.views import staff_only, staff_page
from streaming.feed import may_read, private_to, session_reader, session_reader_async
from streaming.schemas import PublishIn, StreamEventList, TrimIn
from traces.pages import PERMISSIONS as TRACES

LIVE_PERMISSIONS = permissions_for("streams:read")  # /live/ is the feed's page
LIVE_PAGE_HISTORY_SECONDS = 60  # the page opens on the events of the last minute, replayed by the feed

CONSUME_MAX_BLOCK_MS = 30_000
STREAM_ID = re.compile(r"(\d{1,20})(?:-(\d{1,20}))?")


def valid_stream_id(raw: str) -> bool:
    """Whether `raw` is an id Redis takes: `ms` or `ms-seq`, each a 64-bit unsigned number."""
    match = STREAM_ID.fullmatch(raw)
    return match is not None and all(int(part) < 2**64 for part in match.groups() if part)


def readable(reader, found: list[dict]) -> list[dict]:
    """The events of `found` that `reader` may read (streaming.feed.may_read): not those private
    to other agents, nor for a staff session those whose subject its permissions do not show."""
    return [event for event in found if may_read(reader, private_to(event["event_type"], event["data"]), event["event_type"])]


def reader_of(request):
    """Who reads, for may_read: the request's agent key, or its staff session's SessionReader."""
    return request.auth if request.auth is not None else session_reader(request.user.has_perms)


def principal_name(request) -> str:
    return request.auth.name if request.auth is not None else request.user.get_username()


class StreamList(APIView):
    required_scopes = {"GET": "streams:read"}

    @extend_schema(operation_id="streams_list", responses=OpenApiTypes.OBJECT, summary="The event types that have a stream")
    def get(self, request):
        return Response({"event_types": streams.event_types()})


class Stream(APIView):
    required_scopes = {"GET": "streams:read", "POST": "streams:write", "DELETE": "streams:admin"}

    @extend_schema(
        operation_id="streams_recent",
        responses=StreamEventList,
        parameters=[OpenApiParameter("count", int), OpenApiParameter("start", str), OpenApiParameter("end", str)],
        summary="The last `count` events (default 100) between stream ids `start` and `end`, oldest first",
    )
    def get(self, request, event_type: str):
        count = bounded_int(request.query_params, "count", 100, 1, 1000)
        bounds = {name: request.query_params.get(name) or default for name, default in (("start", "-"), ("end", "+"))}
        for name, value in bounds.items():
            if value not in ("-", "+") and not valid_stream_id(value.removeprefix("(")):  # "(": excluding that id
                raise exceptions.ValidationError({name: ["A stream id such as 1700000000000-0, or - or +."]})
        return Response(readable(reader_of(request), streams.recent(event_type, count, bounds["start"], bounds["end"])))

    @extend_schema(
        request=PublishIn,
        responses={201: OpenApiTypes.OBJECT},
        summary="Publish an event; returns its stream id. Its `source` is the key's name (a staff user's name)",
    )
    def post(self, request, event_type: str):
        if events.reserved(event_type):
            raise exceptions.PermissionDenied(f"'{event_type}' is the server's own event type.", code="reserved_event_type")
        body = validate(PublishIn, request.data)
        # The body's `source` is ignored: who published an event is the server's to say.
        event = events.Event(event_type, body.data, principal_name(request))
        key = request.auth
        if key is None or key.has_scope("streams:admin"):
            (entry_id,) = events.publish_now([event])
        else:
            size = sum(len(value.encode()) for value in event.values())
            if settings.STREAM_ENTRY_MAX_BYTES and size > settings.STREAM_ENTRY_MAX_BYTES:
                raise quotas.refused("stream_entry_too_large")
            entry_id = events.publish_for_key(event, key.prefix, settings.STREAM_NEW_TYPES_PER_KEY)
        return Response({"event_id": entry_id}, status=201)

    @extend_schema(responses={200: OpenApiTypes.OBJECT}, summary="Delete the stream; `deleted`: whether it existed")
    def delete(self, request, event_type: str):
        return Response({"deleted": streams.delete(event_type)})


class StreamInfo(APIView):
    required_scopes = {"GET": "streams:read"}

    @extend_schema(responses=OpenApiTypes.OBJECT, summary="Length and first and last event ids of the stream")
    def get(self, request, event_type: str):
        return Response(streams.info(event_type))


class StreamTrim(APIView):
    required_scopes = {"POST": "streams:admin"}

    @extend_schema(request=TrimIn, responses=OpenApiTypes.OBJECT, summary="Keep only the newest `max_length` events")
    def post(self, request, event_type: str):
        return Response({"removed": streams.trim(event_type, validate(TrimIn, request.data).max_length)})


@exempt_from_shedding
@async_endpoint({"GET": "streams:read"})
async def consume(request: HttpRequest, key) -> dict:
    """GET /api/v1/streams/consume?types=a,b&after=ID[,ID]&count=10&block_ms=5000

    Events of the given types after the given stream ids (one for all types, or one per type;
    `$` means "from now on"), waiting up to `block_ms` for the first one to arrive. The reply
    holds the events and, per type, the id to pass as `after` next time."""
    types = [t for t in request.GET.get("types", "").split(",") if t]
    if not types or not all(events.valid_event_type(t) for t in types):
        raise exceptions.ValidationError({"types": ["List one or more event types, comma-separated."]})
    after = request.GET.get("after", "$").split(",")
    if len(after) not in (1, len(types)) or not all(a == "$" or valid_stream_id(a) for a in after):
        raise exceptions.ValidationError({"after": ["Give one stream id (or $), or one per type."]})
    positions = dict(zip(types, after * len(types) if len(after) == 1 else after, strict=True))
    count = bounded_int(request.GET, "count", 10, 1, 1000)
    block_ms = bounded_int(request.GET, "block_ms", 0, 0, CONSUME_MAX_BLOCK_MS)
    async with quotas.held(key, block_ms / 1000):
        found = await streams.read(positions, count, block_ms or None)
    for event in found:
        positions[event["event_type"]] = event["event_id"]
    reader = key if key is not None else await session_reader_async(await request.auser())
    return {"events": readable(reader, found), "after": positions}


@staff_only(*LIVE_PERMISSIONS)
def live_page(request: HttpRequest):
    """/live/: agents, events and pending approvals as they happen (static/streaming/live.js); for
    staff who may read the streams, as the feed it reads (/ws/live/) checks again. The agents'
    table is for those who may read the agents' state (coordination:read), the pending count for
    those who may view approval requests (approvals:read), as the API the page asks checks again:
    without them the page has the feed alone."""
    may_see_approvals = request.user.has_perms(permissions_for("approvals:read"))
    return staff_page(
        request,
        "streaming/live.html",
        feed_url="/ws/live/",
        since=streams.format_stream_id((int((time.time() - LIVE_PAGE_HISTORY_SECONDS) * 1000), 0)),
        stale_seconds=settings.HEARTBEAT_STALE_SECONDS,
        pending_approvals=approvals.waiting_count() if may_see_approvals else None,
        show_agents=request.user.has_perms(permissions_for("coordination:read")),
        agent_links=agent_links(request.user),
        event_types=streams.event_types(),
    )


def agent_links(user) -> list[dict[str, str]]:
    """The pages of an agent's records that `user` may open, each a URL to append the agent's id to."""
    approvals_url = reverse("admin:approvals_approvalrequest_changelist")
    links = [
        ("runs", ("runs.view_run",), reverse("admin:runs_run_changelist") + "?agent_name__exact="),
        ("traces", TRACES, reverse("traces") + "?agent="),
        ("signals", ("coordination.view_agent",), reverse("signals") + "?agent_id="),
        ("approvals", ("approvals.view_approvalrequest",), approvals_url + "?agent_id__exact="),
    ]
    return [{"label": label, "url": url} for label, needed, url in links if user.has_perms(needed)]
