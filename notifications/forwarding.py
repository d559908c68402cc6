"""Forwarding records: the events of the types a channel lists, read from their streams in
batches and written as deliveries, each batch once."""

from __future__ import annotations

import logging
from contextlib import suppress

from django.db import transaction
from redis.exceptions import LockError

from core import events, streams
from core.fastpaths.bulk_insert import insert_rows
from core.redis import get_redis
from notifications.models import Delivery, Notification, NotificationChannel
from notifications.sending import CHANNEL_TRYING, channel_down
from notifications.services import queue

logger = logging.getLogger(__name__)

FORWARD_BATCH = 500  # events of one type read at once for a channel, and sent in one message
FORWARD_MAX_BATCHES = 50  # batches of one type one forwarding pass reads for a channel; the next pass goes on
FORWARD_CURSOR = "telemetry:forward:{channel}:{event_type}"  # the last stream id forwarded
FORWARD_LOCK = "telemetry:forward:lock"


# KEYS: a stream. ARGV: the id to read from, how many at most, the stream's event type. Returns
# the first and last ids read, how many, and the events as a JSON array of what streams.decode()
# returns, made here from the entries as stored: parsing and writing each in Python was most of
# forwarding's cost. Nothing when there is nothing to read.
READ_RECORDS = """
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
if #entries == 0 then
  return {}
end
local records = {}
for i, entry in ipairs(entries) do
  local field = {}
  for j = 1, #entry[2], 2 do
    field[entry[2][j]] = entry[2][j + 1]
  end
  local data = field.data
  if data == nil or data == '' then
    data = '{}'
  end
  records[i] = '{"event_id": "' .. entry[1] .. '", "event_type": ' .. cjson.encode(field.event_type or ARGV[3])
    .. ', "timestamp": ' .. (field.timestamp and cjson.encode(field.timestamp) or 'null')
    .. ', "source": ' .. (field.source and cjson.encode(field.source) or 'null') .. ', "data": ' .. data .. '}'
end
return {entries[1][1], entries[#entries][1], #entries, '[' .. table.concat(records, ', ') .. ']'}
"""


def forward_events() -> int:
    """Write the events each channel forwards that it was not sent yet as deliveries, up to
    FORWARD_BATCH events each, and queue them (a channel that is down: written waiting for its
    backoff; one a worker is sending to: left for the retry sweep); how many events were queued.
    Each channel reads each of its event types' streams from where it left off (at first: from
    when the channel was created), in batches until it has caught up. Serialized by a lock: a slow
    pass and the next one never read the same events twice (and the database refuses a batch
    twice anyway). Streams keep about EVENT_STREAM_MAXLEN events a type: events trimmed before a
    pass reads them are not forwarded (it logs a warning)."""
    redis = get_redis()
    lock = redis.lock(FORWARD_LOCK, timeout=300, blocking=False)
    if not lock.acquire():
        return 0
    queued = 0
    try:
        for channel in NotificationChannel.objects.filter(enabled=True).exclude(forwards=[]):
            for event_type in channel.forwards:
                queued += _forward(redis, channel, event_type)
    finally:
        with suppress(LockError):  # a pass longer than the lock's timeout: the next one may have started
            lock.release()
    return queued


def start_forwarding(channel: NotificationChannel) -> None:
    """Forward from now on the event types `channel` newly lists (not the events its stream still
    holds from before), and forget the ones it no longer lists."""
    redis = get_redis()
    prefix = FORWARD_CURSOR.format(channel=channel.pk, event_type="")
    for key in redis.scan_iter(f"{prefix}*"):
        if key.decode().removeprefix(prefix) not in channel.forwards:  # event types may hold ":" themselves
            redis.delete(key)
    for event_type in channel.forwards:
        latest = redis.xrevrange(streams.stream_key(event_type), count=1)
        redis.set(FORWARD_CURSOR.format(channel=channel.pk, event_type=event_type), latest[0][0] if latest else "0-0", nx=True)


def _forward(redis, channel: NotificationChannel, event_type: str) -> int:
    cursor_key = FORWARD_CURSOR.format(channel=channel.pk, event_type=event_type)
    cursor = redis.get(cursor_key)
    stream = streams.stream_key(event_type)
    since = f"({cursor.decode()}" if cursor else f"{int(channel.created_at.timestamp() * 1000)}-0"
    _warn_if_trimmed(redis, event_type, since.lstrip("("), channel)
    # A channel that is down gets its records as waiting for its backoff, for the retry sweep;
    # one a worker is sending to (a dead receiver holds it a whole timeout), as due, not queued:
    # a task per batch would only find it busy.
    down = channel_down(channel)
    waits = {"last_error": down[0], "next_attempt_at": down[1]} if down else {}
    busy = down or redis.exists(CHANNEL_TRYING.format(channel=channel.pk))
    # Everything new read first, back to back, then written in one transaction: on SQLite each
    # write waits its turn behind the agents' (a write a batch let the stream trim events unread).
    rows, read_records = [], redis.register_script(READ_RECORDS)
    for _ in range(FORWARD_MAX_BATCHES):
        read = read_records(keys=[stream], args=[since, FORWARD_BATCH, event_type])
        if not read:
            break
        first, last, count, records = read[0].decode(), read[1].decode(), read[2], read[3].decode()
        rows.append({"channel_id": channel.pk, "topic": event_type, "record_id": f"{event_type}:{first}..{last}",
                     "notification": vars(_records(event_type, count, first, last)), "records": count,
                     "records_json": records, **waits})  # fmt: skip
        since = f"({last}"
        if count < FORWARD_BATCH:
            break
    if not rows:
        return 0
    with transaction.atomic():
        ids = insert_rows(Delivery, rows, "ON CONFLICT DO NOTHING", returning="id")  # a batch already sent is skipped
    redis.set(cursor_key, last)
    if busy:
        return 0
    queue(ids)
    return sum(Delivery.objects.filter(pk__in=ids).values_list("records", flat=True))


def _warn_if_trimmed(redis, event_type: str, since: str, channel: NotificationChannel) -> None:
    """Log when the stream has been trimmed and its oldest event is newer than where forwarding
    goes on from: the events between may have been trimmed unread (it keeps EVENT_STREAM_MAXLEN)."""
    stream = streams.stream_key(event_type)
    oldest = redis.xrange(stream, count=1)
    if not oldest or streams.parse_stream_id(oldest[0][0]) <= streams.parse_stream_id(since):
        return
    if int(redis.hget(events.PUBLISHED_KEY, event_type) or 0) > redis.xlen(stream):
        logger.warning(
            "forwarding to %s: %s events after %s up to %s may have been trimmed before they were "
            "forwarded; raise EVENT_STREAM_MAXLEN or forward more often (FORWARD_SECONDS)",
            channel, event_type, since, oldest[0][0].decode(),
        )  # fmt: skip


def _records(event_type: str, count: int, first: str, last: str) -> Notification:
    """What tells of `count` forwarded events of one type (the events themselves go beside it)."""
    return Notification(
        topic=event_type,
        subject=f"{count} {event_type} record{'s' if count > 1 else ''}",
        text=f"{event_type} events {first} to {last}",
    )
