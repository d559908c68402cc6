"""Telling people and other systems: one mechanism for every app (approvals, alerts, forwarded
records).

Each message to each channel is a `Delivery` row: `notify()` writes them (a notification to the
channels that hear its topic) and `forward_events()` writes one per batch of events (up to
FORWARD_BATCH of a type, oldest first) a channel forwards; a worker sends them (`send()`), never
the request path, so a dead mail server or webhook never slows an agent. A failed one is tried
again after an exponential backoff by beat's retry sweep, until delivered or out of attempts;
the admin shows each one's status and retries failed ones.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import json
import logging
import time
from collections import defaultdict
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from redis.exceptions import LockError

from core import events
from core.batch import insert_rows
from core.models import Delivery, NotificationChannel
from core.redis import get_redis

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Telemetry-Signature"
TIMESTAMP_HEADER = "X-Telemetry-Timestamp"
WEBHOOK_TIMEOUT = 10.0
TRY_LOCK_SECONDS = 60  # one worker sends to a channel at a time; longer than any send takes
# What a failed delivery raises (smtplib's errors are OSErrors).
DELIVERY_ERRORS = (httpx.HTTPError, OSError)
BACKOFF_MAX_SECONDS = 600
DUE_BATCH = 500  # deliveries one retry sweep sends
FORWARD_BATCH = 500  # events of one type read at once for a channel, and sent in one message
FORWARD_MAX_BATCHES = 50  # batches of one type one forwarding pass reads for a channel; the next pass goes on
FORWARD_CURSOR = "telemetry:forward:{channel}:{event_type}"  # the last stream id forwarded
FORWARD_LOCK = "telemetry:forward:lock"
CHANNEL_DOWN = "telemetry:channel:{channel}:down"  # the last error, for as long as the channel waits
CHANNEL_FAILURES = "telemetry:channel:{channel}:failures"  # consecutive failures: its backoff
CHANNEL_TRYING = "telemetry:channel:{channel}:trying"  # a worker is sending to the channel
CHANNEL_HEALTH = (CHANNEL_DOWN, CHANNEL_FAILURES)  # forgotten when it delivers again


# KEYS: a stream. ARGV: the id to read from, how many at most, the stream's event type. Returns
# the first and last ids read, how many, and the events as a JSON array of what events.decode()
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


@dataclass
class Notification:
    topic: str  # an event type, e.g. approval.requested
    subject: str
    text: str
    link: str = ""  # where a person acts on it
    data: dict[str, Any] = field(default_factory=dict)


def notify(notification: Notification, channels: list[NotificationChannel] | None = None) -> int:
    """Deliver `notification` to each of `channels` (by default: every enabled channel that hears
    its topic); how many. Call it after the transaction commits (inside it: `record`)."""
    ids = record(notification, channels)
    queue(ids)
    return len(ids)


def record(notification: Notification, channels: list[NotificationChannel] | None = None) -> list[int]:
    """Write the deliveries of `notification` (see notify) without handing them to a worker: in
    the transaction that writes what they tell of, so that neither stands without the other.
    `queue` them once it commits; if that is lost, beat's retry sweep sends them."""
    if channels is None:
        channels = [channel for channel in NotificationChannel.objects.filter(enabled=True) if channel.hears(notification.topic)]
    created = Delivery.objects.bulk_create(
        [Delivery(channel=channel, topic=notification.topic, notification=asdict(notification)) for channel in channels]
    )
    return [delivery.pk for delivery in created]


def queue(ids: list[int]) -> None:
    """Hand deliveries to a worker; if the broker is down, beat's retry sweep sends them later."""
    from core.tasks import send_deliveries

    if ids:
        try:
            send_deliveries.apply_async((ids,), retry=False)
        except Exception:
            logger.exception("notifications: could not queue %d deliveries; the retry sweep will send them", len(ids))


def backoff(attempts: int) -> timedelta:
    """How long after its `attempts`th failure a delivery is tried again: 1 s, 2 s, 4 s... (seed 003's)."""
    return timedelta(seconds=min(2 ** (attempts - 1), BACKOFF_MAX_SECONDS))


def send(ids: list[int]) -> dict[str, int]:
    """Send the pending deliveries among `ids` that are due, oldest first, channel by channel.

    A channel that fails is down for its backoff (1 s, 2 s, 4 s... after its consecutive
    failures, kept in Redis for every worker): its deliveries wait until then without a try, each
    counting an attempt, in one update for them all. One worker at a time sends to a channel;
    another leaves them as they were, for the next retry sweep. So a dead receiver costs one
    timeout per backoff and one write per waiting delivery per backoff, and ties up one worker at
    most."""
    by_channel: dict[int, list[int]] = defaultdict(list)
    for pk, channel_id in _due().filter(pk__in=ids).order_by("pk").values_list("pk", "channel_id"):
        by_channel[channel_id].append(pk)
    outcome = {"delivered": 0, "tried": 0, "postponed": 0, "failed": 0}
    for channel in NotificationChannel.objects.filter(pk__in=by_channel).order_by("pk"):
        waiting = by_channel[channel.pk]
        for delivery in _read(waiting):
            rest = waiting[bisect.bisect_left(waiting, delivery.pk) :]
            if down := _down(channel):
                outcome["postponed"] += len(rest)
                outcome["failed"] += _postpone(rest, *down)
                break
            trying = get_redis().lock(CHANNEL_TRYING.format(channel=channel.pk), timeout=TRY_LOCK_SECONDS, blocking=False)
            if not trying.acquire():
                outcome["postponed"] += len(rest)
                break
            try:
                outcome["failed"] += _try(channel, delivery, outcome)
            finally:
                with suppress(LockError):  # held past its timeout: another worker may have it now
                    trying.release()
    return outcome


def _read(ids: list[int], chunk: int = 50):
    """The deliveries `ids` (ascending), read `chunk` at a time: a channel found down stops the
    reading. Without their records (read when one is tried): a batch is hundreds of kilobytes."""
    for start in range(0, len(ids), chunk):
        yield from Delivery.objects.filter(pk__in=ids[start : start + chunk]).defer("records_json").order_by("pk")


def _try(channel: NotificationChannel, delivery: Delivery, outcome: dict[str, int]) -> int:
    """One attempt at `delivery`; 1 when it failed for good."""
    # Claimed first: one attempt, by one worker, however many sweeps see it due.
    claimed = Delivery.objects.filter(
        pk=delivery.pk, status=Delivery.Status.PENDING, attempts=delivery.attempts, attempts__lt=settings.DELIVERY_MAX_ATTEMPTS
    )
    if not claimed.update(attempts=F("attempts") + 1):
        return 0
    outcome["tried"] += 1
    try:
        deliver(channel, Notification(**delivery.notification), delivery.records_json if delivery.records else "")
    except Exception as exc:  # whatever failed, the delivery must not stay due forever
        if not isinstance(exc, DELIVERY_ERRORS):
            logger.exception("notifications: delivery %s to %s failed unexpectedly", delivery.pk, channel)
        error = f"{type(exc).__name__}: {exc}"[:1000]
        return _postpone([delivery.pk], error, _trip(channel, error), counted=True)
    _forget_failures(channel.pk)
    delivered = {"status": Delivery.Status.DELIVERED, "delivered_at": timezone.now(), "last_error": ""}
    Delivery.objects.filter(pk=delivery.pk).update(**delivered)
    outcome["delivered"] += 1
    return 0


def _down(channel: NotificationChannel) -> tuple[str, datetime] | None:
    """(why, until when) while `channel` is down after a failure."""
    down = get_redis().get(CHANNEL_DOWN.format(channel=channel.pk))
    if down is None:
        return None
    until, error = json.loads(down)
    return f"not tried: the channel is down ({error})", datetime.fromtimestamp(until, UTC)


def _trip(channel: NotificationChannel, error: str) -> datetime:
    """Mark `channel` down for the backoff of its consecutive failures; until when."""
    redis = get_redis()
    failures = redis.incr(CHANNEL_FAILURES.format(channel=channel.pk))
    redis.expire(CHANNEL_FAILURES.format(channel=channel.pk), 86400)
    wait = backoff(failures)
    until = timezone.now() + wait
    down = json.dumps([until.timestamp(), error])
    redis.set(CHANNEL_DOWN.format(channel=channel.pk), down, px=int(wait.total_seconds() * 1000))
    return until


def _postpone(ids: list[int], error: str, until: datetime, counted: bool = False) -> int:
    """Try the deliveries `ids` again at `until`, each an attempt more (unless `counted` already);
    those out of attempts fail. How many failed."""
    pending = Delivery.objects.filter(pk__in=ids, status=Delivery.Status.PENDING)
    pending.update(last_error=error[:1000], next_attempt_at=until, **({} if counted else {"attempts": F("attempts") + 1}))
    return pending.filter(attempts__gte=settings.DELIVERY_MAX_ATTEMPTS).update(status=Delivery.Status.FAILED)


def due_deliveries() -> list[int]:
    """Pending deliveries whose next attempt is due (beat's retry sweep), at most DUE_BATCH."""
    return list(_due().order_by("next_attempt_at").values_list("pk", flat=True)[:DUE_BATCH])


def _due():
    """Pending deliveries of enabled channels whose next attempt has come."""
    return Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=timezone.now(), channel__enabled=True)


def _forget_failures(*channel_ids: int) -> None:
    """The channels are tried at once again, their backoff starting over."""
    if channel_ids:
        get_redis().delete(*(key.format(channel=c) for c in channel_ids for key in CHANNEL_HEALTH))


def retry_failed(deliveries) -> int:
    """Make the failed ones among `deliveries` pending again, with fresh attempts, and send them
    now: their channels are tried at once (someone fixed the receiver, presumably)."""
    failed = deliveries.filter(status=Delivery.Status.FAILED)
    ids = list(failed.values_list("pk", flat=True))
    _forget_failures(*set(failed.values_list("channel_id", flat=True)))
    Delivery.objects.filter(pk__in=ids).update(status=Delivery.Status.PENDING, attempts=0, next_attempt_at=timezone.now())
    queue(ids)
    return len(ids)


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
    for key in redis.scan_iter(FORWARD_CURSOR.format(channel=channel.pk, event_type="*")):
        if key.decode().rsplit(":", 1)[1] not in channel.forwards:
            redis.delete(key)
    for event_type in channel.forwards:
        latest = redis.xrevrange(events.stream_key(event_type), count=1)
        redis.set(FORWARD_CURSOR.format(channel=channel.pk, event_type=event_type), latest[0][0] if latest else "0-0", nx=True)


def _forward(redis, channel: NotificationChannel, event_type: str) -> int:
    cursor_key = FORWARD_CURSOR.format(channel=channel.pk, event_type=event_type)
    cursor = redis.get(cursor_key)
    stream = events.stream_key(event_type)
    since = f"({cursor.decode()}" if cursor else f"{int(channel.created_at.timestamp() * 1000)}-0"
    _warn_if_trimmed(redis, event_type, since.lstrip("("), channel)
    # A channel that is down gets its records as waiting for its backoff, for the retry sweep;
    # one a worker is sending to (a dead receiver holds it a whole timeout), as due, not queued:
    # a task per batch would only find it busy.
    down = _down(channel)
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
    stream = events.stream_key(event_type)
    oldest = redis.xrange(stream, count=1)
    if not oldest or events.parse_stream_id(oldest[0][0]) <= events.parse_stream_id(since):
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


def deliver(channel: NotificationChannel, notification: Notification, records_json: str = "") -> str:
    """Send now, with the forwarded events `records_json` (a JSON array) if any; a line saying
    what was done. Raises on failure (the task retries)."""
    if channel.kind == NotificationChannel.Kind.EMAIL:
        message = f"{notification.text}\n\n{notification.link}" if notification.link else notification.text
        records = json.loads(records_json) if records_json else []  # one JSON line each
        message = "\n".join([message, *(json.dumps(record) for record in records)])
        subject = " ".join(notification.subject.split())  # a header: one line, whatever an agent wrote
        send_mail(subject, message, settings.DEFAULT_FROM_EMAIL, channel.recipients())
        return f"mailed {', '.join(channel.recipients())}"
    if channel.kind == NotificationChannel.Kind.SLACK:
        link = f"\n<{notification.link}|Open>" if notification.link else ""
        body = json.dumps({"text": f"*{notification.subject}*\n{notification.text}{link}"})
    else:
        body = json.dumps(asdict(notification), default=str)
        if records_json:  # beside the rest, as stored: a JSON object's text ends with its brace
            body = f'{body[:-1]}, "records": {records_json}}}'
    body = body.encode()
    response = httpx.post(channel.target, content=body, headers=signed_headers(channel.secret, body), timeout=WEBHOOK_TIMEOUT)
    response.raise_for_status()
    return f"posted to {channel.target}: {response.status_code}"


def signed_headers(secret: str, body: bytes) -> dict[str, str]:
    """The receiver checks HMAC-SHA256(secret, f"{timestamp}.".encode() + body) against the signature."""
    timestamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", SIGNATURE_HEADER: f"sha256={digest}", TIMESTAMP_HEADER: timestamp}
