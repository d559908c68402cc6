"""Agent-key authentication for every API request (staff use the session).

A key once checked is remembered for KEY_CACHE_SECONDS in Redis (shared by every process), under
its prefix together with a SHA-256 of the whole key, so a request with a known key costs no
database query, and in async views no thread either. The entry is JSON of the fields requests
read, never a pickle: whoever can write to Redis must not be able to run code in the web process.
Saving or deleting a key through the ORM (revoking it in the admin, say) forgets it at once;
expiry is checked on every request. Without Redis the database answers.

Each web process also keeps the Redis entries it read or wrote (remembered_key). An async view whose
Redis work is one script (core.events.EventScript: a heartbeat) acts on such a key without
reading Redis first: its script checks, before it writes anything, that the entry is still the one
read (KeyCheck), and refuses with StaleKey otherwise. A key revoked or changed (its entry
deleted) is thus refused by the very next request, as when every request reads the entry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import datetime

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from core.addresses import client_in
from core.db import close_connections
from core.models import AgentKey
from core.redis import get_pipelined_redis, get_redis

logger = logging.getLogger(__name__)

KEY_SCHEMES = ("api-key", "bearer")
# How long a checked key is trusted without the database. A change made other than by saving or
# deleting the model (a queryset update) shows after at most this long.
KEY_CACHE_SECONDS = 30


class KeyUser:
    """`request.user` for a request made with an agent key: authenticated, never staff."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, key: AgentKey):
        self.key = key
        self.username = f"key:{key.name}"

    def __str__(self) -> str:
        return self.username


# The WWW-Authenticate header of a 401: how to authenticate.
CHALLENGE = 'Api-Key realm="api"'


def key_from_header(header: str) -> str | None:
    """The key in `Api-Key <key>` or `Bearer <key>`, or None when the header is something else."""
    scheme, _, key = header.strip().partition(" ")
    if scheme.lower() not in KEY_SCHEMES:
        return None
    if not key.strip():
        raise exceptions.AuthenticationFailed("The Authorization header names a scheme but no key.")
    return key.strip()


def authenticate_key(raw_key: str) -> AgentKey:
    """The usable key for `raw_key`; AuthenticationFailed when unknown, revoked or expired.

    For async views and websockets (which call it through sync_to_async): their request may stay
    open for a long wait, and Django gives a thread's database connection back only when the
    request ends, so it is given back here. Otherwise every held wait would keep a connection:
    with PostgreSQL's pool, DATABASE_POOL_MAX_SIZE waits would stall their web process."""
    try:
        return checked_key(raw_key)
    finally:
        close_connections()


async def authenticate_key_async(raw_key: str) -> AgentKey:
    """`authenticate_key` for async code: a remembered key, its use recorded lately, costs one
    Redis round trip and no thread (Django's ASGI handler starts a thread for each request's
    first sync_to_async call)."""
    name = _cache_name(raw_key)
    try:
        entry = await get_pipelined_redis().execute("GET", name)
        key = _recall(raw_key, entry)
    except Exception as exc:  # noqa: BLE001 - without Redis, the database answers
        logger.warning("agent keys: Redis could not be read (%s); asking the database", exc)
        key = None
    if key is None or key.use_to_record:
        return await sync_to_async(authenticate_key)(raw_key)
    _refuse_expired(key)
    _know(name, entry, raw_key, key)
    return key


async def check_key_ahead(request) -> None:
    """For a sync view, before its thread: the request's agent key, authenticated here in the event
    loop (one round trip on the pipelined connection), or the AuthenticationFailed refusing it, as
    request.checked_agent_key, which AgentKeyAuthentication then takes instead of asking Redis from
    the thread. Any other failure (the database away) is left to the view, which checks the key
    again and answers it as it always did."""
    try:
        raw_key = key_from_header(request.META.get("HTTP_AUTHORIZATION", ""))
        if raw_key is None:
            return
        request.checked_agent_key = await authenticate_key_async(raw_key)
    except exceptions.AuthenticationFailed as refused:
        request.checked_agent_key = refused
    except Exception:  # noqa: BLE001, S110 - the view authenticates again and answers the failure
        pass


@dataclass(frozen=True)
class KeyCheck:
    """For a script acting on a key from remembered_key: the key's Redis entry, and its SHA-1
    when this process read it."""

    entry: str
    sha1: str


class StaleKey(Exception):
    """A script's KeyCheck failed: the key changed, was revoked, or its entry expired since this
    process read it. Authenticate it afresh (authenticate_key_async) and try again."""


# The Redis entries of keys this process read or wrote, by entry: (the entry's SHA-1, the digest
# of the raw key, the key). Cleared when full: a process serves a few keys; a flood costs reads.
_known_entries: dict[str, tuple[str, str, AgentKey]] = {}
KNOWN_ENTRIES_MAX = 10_000


def _know(name: str, entry: bytes, raw_key: str, key: AgentKey) -> None:
    if len(_known_entries) >= KNOWN_ENTRIES_MAX:
        _known_entries.clear()
    _known_entries[name] = (hashlib.sha1(entry).hexdigest(), _digest(raw_key), key)  # noqa: S324 - Redis's sha1hex


def forget_known(check: KeyCheck) -> None:
    """After a StaleKey: this process's copy of the entry is out of date."""
    _known_entries.pop(check.entry, None)


def remembered_key(raw_key: str) -> tuple[AgentKey, KeyCheck] | None:
    """The key this process read or wrote for `raw_key`, with the check a script must make before acting
    on it; None when not read yet, or due to have its use recorded (authenticate it instead).
    AuthenticationFailed when it has expired."""
    name = _cache_name(raw_key)
    known = _known_entries.get(name)
    if known is None or not hmac.compare_digest(known[1], _digest(raw_key)):
        return None
    sha1, _, key = known
    _refuse_expired(key)
    return None if key.use_to_record else (key, KeyCheck(name, sha1))


def checked_key(raw_key: str) -> AgentKey:
    """`authenticate_key`, keeping the thread's database connection (for sync views)."""
    key = _remembered(raw_key)
    if key is None:
        try:
            key = AgentKey.objects.get_from_key(raw_key)
        except AgentKey.DoesNotExist:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.", code="invalid_key") from None
        _remember(raw_key, key)
    _refuse_expired(key)
    if key.use_to_record:
        key.touch()
        _remember(raw_key, key)
    return key


def key_with_scope(request, scope: str) -> AgentKey:
    """For plain Django views: the request's key (its Authorization header's, or the key-less one),
    if it holds `scope`; DRF's NotAuthenticated or PermissionDenied (answer them with
    core.api.describe) otherwise."""
    raw_key = key_from_header(request.META.get("HTTP_AUTHORIZATION", ""))
    if raw_key is not None:
        key = checked_key(raw_key)
    elif keyless(request):
        key = keyless_key()
    else:
        raise exceptions.NotAuthenticated(f"Send an agent key with the {scope} scope (Authorization: Bearer <key>).")
    if not key.has_scope(scope):
        raise exceptions.PermissionDenied(f"This key lacks the {scope} scope.", code="missing_scope")
    return key


def keyless(request) -> bool:
    """Whether the request acts as the key KEYLESS_KEY names: it has no Authorization header and
    comes from an address in KEYLESS_WRITES_FROM (none by default)."""
    return not request.META.get("HTTP_AUTHORIZATION") and client_in(request, settings.KEYLESS_WRITES_FROM)


def keyless_key() -> AgentKey:
    """The key KEYLESS_KEY names, with its agents, scopes and bounds; AuthenticationFailed when no
    usable key has that name, several have, or it has expired. One query a request (no cache)."""
    keys = list(AgentKey.objects.filter(name=settings.KEYLESS_KEY, revoked=False)[:2])
    if len(keys) != 1:
        problem = "several agent keys are" if keys else "no agent key (not revoked) is"
        raise exceptions.AuthenticationFailed(
            f"Key-less requests act as KEYLESS_KEY, but {problem} named {settings.KEYLESS_KEY!r}.", code="keyless_key"
        )
    _refuse_expired(keys[0])
    keys[0].touch()
    return keys[0]


async def keyless_key_async() -> AgentKey:
    """`keyless_key` for async views, giving the thread's database connection back (as authenticate_key)."""

    def checked() -> AgentKey:
        try:
            return keyless_key()
        finally:
            close_connections()

    return await sync_to_async(checked)()


def _refuse_expired(key: AgentKey) -> None:
    if key.has_expired:
        raise exceptions.AuthenticationFailed("This API key has expired.", code="expired_key")


# What a remembered key's entry holds of it, rebuilt into an unsaved AgentKey (its other fields
# at their defaults). The entry's name carries a hash of these, so a deploy that changes them
# never reads entries written by the code before (nor the pickles that code wrote).
KEY_FIELDS = ("id", "prefix", "name", "expiry_date", "agents", "scopes", "last_used_at")
DATETIME_FIELDS = ("expiry_date", "last_used_at")
KEY_SHAPE = hashlib.sha256(" ".join(KEY_FIELDS).encode()).hexdigest()[:8]


def _cache_name(raw_key_or_prefix: str) -> str:
    return f"telemetry:agent-key:{KEY_SHAPE}:{raw_key_or_prefix.partition('.')[0]}"


def _digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def _entry(raw_key: str, key: AgentKey) -> bytes:
    fields = {name: getattr(key, name) for name in KEY_FIELDS}
    for name in DATETIME_FIELDS:
        if fields[name] is not None:
            fields[name] = fields[name].isoformat()
    return json.dumps({"digest": _digest(raw_key), "key": fields}).encode()


def _recall(raw_key: str, found: bytes | None) -> AgentKey | None:
    """The key of an entry _entry wrote, if it is for `raw_key`; None for anything else (an entry
    that is not JSON of that shape is a miss, and the database answers)."""
    if found is None:
        return None
    try:
        entry = json.loads(found)
        fields = {name: entry["key"][name] for name in KEY_FIELDS}
        for name in DATETIME_FIELDS:
            if fields[name] is not None:
                fields[name] = datetime.fromisoformat(fields[name])
        if not hmac.compare_digest(entry["digest"], _digest(raw_key)):
            return None
    except (ValueError, TypeError, KeyError) as exc:
        logger.warning("agent keys: an unreadable Redis entry (%s); asking the database", type(exc).__name__)
        return None
    return AgentKey(**fields)


def _remembered(raw_key: str) -> AgentKey | None:
    try:
        return _recall(raw_key, get_redis().get(_cache_name(raw_key)))
    except Exception as exc:  # noqa: BLE001 - without Redis, the database answers
        logger.warning("agent keys: Redis could not be read (%s); asking the database", exc)
        return None


def _remember(raw_key: str, key: AgentKey) -> None:
    name, entry = _cache_name(raw_key), _entry(raw_key, key)
    try:
        get_redis().set(name, entry, ex=KEY_CACHE_SECONDS)
        _know(name, entry, raw_key, key)
    except Exception as exc:  # noqa: BLE001 - without Redis, the database answers
        logger.warning("agent keys: Redis could not be written (%s)", exc)


def forget_key(prefix: str) -> None:
    try:
        get_redis().delete(_cache_name(prefix))
    except Exception as exc:  # noqa: BLE001 - without Redis, the database answers
        logger.warning("agent keys: Redis could not forget key %s (%s)", prefix, exc)


@receiver([post_save, post_delete], sender=AgentKey)
def forget_changed_key(sender, instance: AgentKey, **kwargs) -> None:
    """Now, and again once committed: a request that read the old row meanwhile may have cached it."""
    forget_key(instance.prefix)
    transaction.on_commit(lambda: forget_key(instance.prefix))


class AgentKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        raw_key = key_from_header(request.META.get("HTTP_AUTHORIZATION", ""))
        if raw_key is None:
            return None
        key = getattr(request._request, "checked_agent_key", None) or checked_key(raw_key)  # see check_key_ahead
        if isinstance(key, exceptions.AuthenticationFailed):
            raise key
        return KeyUser(key), key

    def authenticate_header(self, request) -> str:
        return CHALLENGE


class KeylessAuthentication(authentication.BaseAuthentication):
    """After the session's: a request without an Authorization header, from an address in
    KEYLESS_WRITES_FROM, acts as the key KEYLESS_KEY names (its agents, scopes, rate limit and bounds)."""

    def authenticate(self, request):
        if not keyless(request):
            return None
        key = keyless_key()
        return KeyUser(key), key


class AgentKeyScheme(OpenApiAuthenticationExtension):
    target_class = AgentKeyAuthentication
    name = "agentKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>` (or `Bearer <key>`); create keys with `manage.py create_agent_key`.",
        }
