"""Sending deliveries: one worker at a time per channel, a channel that fails is down for its
backoff, every message signed."""

from __future__ import annotations

import bisect
import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import ssl
import time
from collections import defaultdict
from contextlib import suppress
from datetime import UTC, datetime, timedelta

import httpcore
import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db.models import F
from django.utils import timezone
from redis.exceptions import LockError
from slack_sdk.errors import SlackClientError

from core.redis import get_redis
from notifications import slack
from notifications.models import Delivery, Notification, NotificationChannel
from notifications.slack import slack_escape

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Telemetry-Signature"
TIMESTAMP_HEADER = "X-Telemetry-Timestamp"
WEBHOOK_TIMEOUT = 10.0
TRY_LOCK_SECONDS = 60  # one worker sends to a channel at a time; longer than any send takes
# What a failed delivery raises (smtplib's errors are OSErrors).
DELIVERY_ERRORS = (httpx.HTTPError, OSError, SlackClientError)  # Slack's: its API's errors and answers
BACKOFF_MAX_SECONDS = 600
DUE_BATCH = 500  # deliveries one retry sweep sends
CHANNEL_DOWN = "telemetry:channel:{channel}:down"  # the last error, for as long as the channel waits
CHANNEL_FAILURES = "telemetry:channel:{channel}:failures"  # consecutive failures: its backoff
CHANNEL_TRYING = "telemetry:channel:{channel}:trying"  # a worker is sending to the channel
CHANNEL_HEALTH = (CHANNEL_DOWN, CHANNEL_FAILURES)  # forgotten when it delivers again


def backoff(attempts: int) -> timedelta:
    """How long after its `attempts`th failure a delivery is tried again: 1 s, 2 s, 4 s...."""
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
            if down := channel_down(channel):
                outcome["postponed"] += len(rest)
                outcome["failed"] += _postpone(rest, *down)
                break
            trying = get_redis().lock(CHANNEL_TRYING.format(channel=channel.pk), timeout=TRY_LOCK_SECONDS, blocking=False)
            if not trying.acquire():
                logger.info(
                    "notifications: %s is busy in another worker; %d deliveries left for the retry sweep", channel, len(rest)
                )
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
    forget_failures(channel.pk)
    delivered = {"status": Delivery.Status.DELIVERED, "delivered_at": timezone.now(), "last_error": ""}
    Delivery.objects.filter(pk=delivery.pk).update(**delivered)
    outcome["delivered"] += 1
    return 0


def channel_down(channel: NotificationChannel) -> tuple[str, datetime] | None:
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


def forget_failures(*channel_ids: int) -> None:
    """The channels are tried at once again, their backoff starting over."""
    if channel_ids:
        get_redis().delete(*(key.format(channel=c) for c in channel_ids for key in CHANNEL_HEALTH))


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
    if channel.kind == NotificationChannel.Kind.SLACK_APP:
        return slack.deliver(channel, notification)
    if channel.kind == NotificationChannel.Kind.SLACK:
        link = f"\n<{notification.link}|Open>" if notification.link else ""  # the server's own link
        body = json.dumps({"text": f"*{slack_escape(notification.subject)}*\n{slack_escape(notification.text)}{link}"})
    else:
        body = json.dumps(notification.message(), default=str)
        if records_json:  # beside the rest, as stored: a JSON object's text ends with its brace
            body = f'{body[:-1]}, "records": {records_json}}}'
    body = body.encode()
    return post(channel.target, body, signed_headers(channel.secret, body))


def post(url: str, body: bytes, headers: dict[str, str]) -> str:
    """POST `body` to a receiver, within WEBHOOK_DEADLINE_SECONDS in all (each step within
    WEBHOOK_TIMEOUT), to a public address unless WEBHOOK_ALLOW_PRIVATE_ADDRESSES. Only the answer's
    status line and headers are read (httpcore caps them at 100 KiB), never its body: nothing in it is
    used. Not through HTTP(S)_PROXY: the address checked must be the one connected to."""
    backend = GuardedBackend(time.monotonic() + settings.WEBHOOK_DEADLINE_SECONDS, settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES)
    with (
        httpx.Client(transport=GuardedTransport(backend), timeout=WEBHOOK_TIMEOUT) as client,
        client.stream("POST", url, content=body, headers=headers) as response,
    ):
        if not response.is_success:  # not raise_for_status: its message holds the URL, and a webhook's token
            raise httpx.HTTPStatusError(
                f"The webhook answered {response.status_code}.", request=response.request, response=response
            )
        return f"posted: {response.status_code}"


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One per process: loading the CA certificates is most of the cost of a new client."""
    return httpx.create_ssl_context()


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport on a GuardedBackend (httpx takes no network backend: its pool is replaced)."""

    def __init__(self, backend: httpcore.NetworkBackend):
        super().__init__(verify=_ssl_context(), trust_env=False)
        self._pool = httpcore.ConnectionPool(ssl_context=_ssl_context(), network_backend=backend)


class GuardedBackend(httpcore.NetworkBackend):
    """Connections of one delivery: each step waits at most until `deadline` (time.monotonic()),
    and, unless `allow_private`, only to a name's addresses that are all public."""

    def __init__(self, deadline: float, allow_private: bool):
        self.deadline = deadline
        self.allow_private = allow_private
        self.backend = httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        address = host if self.allow_private else public_address(host, port)
        stream = self.backend.connect_tcp(
            address, port, self.left(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return DeadlineStream(stream, self)

    def left(self, timeout: float | None, error: type[Exception]) -> float:
        """How long the next step may wait: `timeout`, or less if the deadline comes first."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise error(f"the delivery took longer than WEBHOOK_DEADLINE_SECONDS ({settings.WEBHOOK_DEADLINE_SECONDS:g} s)")
        return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    WRITE_CHUNK = 16 * 1024  # each written within what is left: a slow reader cannot stretch one write

    def __init__(self, stream: httpcore.NetworkStream, backend: GuardedBackend):
        self.stream = stream
        self.backend = backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._step(self.stream.read, max_bytes, timeout, httpcore.ReadTimeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), self.WRITE_CHUNK):
            self._step(self.stream.write, buffer[start : start + self.WRITE_CHUNK], timeout, httpcore.WriteTimeout)

    def _step(self, call, argument, timeout: float | None, error: type[Exception]):
        try:
            return call(argument, self.backend.left(timeout, error))
        except error:
            self.backend.left(None, error)  # a wait cut short by the deadline: say so, not "timed out"
            raise

    def close(self) -> None:
        self.stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        timeout = self.backend.left(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self.stream.start_tls(ssl_context, server_hostname, timeout), self.backend)

    def get_extra_info(self, info: str):
        return self.stream.get_extra_info(info)


def public_address(host: str, port: int) -> str:
    """The address to connect to for `host`; ConnectError when any address it resolves to is not
    public (loopback, private, link-local, shared, reserved...): one of them might be used."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise httpcore.ConnectError(f"{host}: {exc}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in found]
    for address in addresses:
        mapped = address.ipv4_mapped if address.version == 6 else None
        if not (mapped or address).is_global or address.is_multicast:
            raise httpcore.ConnectError(
                f"{host} is at {address}, not a public address (WEBHOOK_ALLOW_PRIVATE_ADDRESSES is false)"
            )
    return str(addresses[0])


def signed_headers(secret: str, body: bytes) -> dict[str, str]:
    """The receiver checks HMAC-SHA256(secret, f"{timestamp}.".encode() + body) against the signature."""
    timestamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", SIGNATURE_HEADER: f"sha256={digest}", TIMESTAMP_HEADER: timestamp}
