"""Websocket security: the Origin check, authentication by session or agent key, and closing the
connections of a key when it is revoked or deleted (through the channel layer, so every process
hears it)."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from rest_framework import exceptions

from core.api import authorize_principal
from core.models import AgentKey

logger = logging.getLogger(__name__)

# Close codes in the private range (4000-4999), after HTTP's: the client can tell why.
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_LAGGED = 4008
CLOSE_TOO_MANY = 4429  # a bound of the key's (core.quotas) or its rate limit


class OriginCheck(OriginValidator):
    """Channels' Origin check against ALLOWED_HOSTS, except that a client sending no Origin passes:
    browsers always send one (which is what stops cross-site websocket hijacking); an agent
    program sends none and authenticates with its key."""

    def valid_origin(self, parsed_origin) -> bool:
        return parsed_origin is None or self.validate_origin(parsed_origin)


def origin_checked(application):
    return OriginCheck(application, settings.ALLOWED_HOSTS)


async def authorize_websocket(scope: dict, required_scope: str) -> AgentKey | None:
    """As core.api.authorize, for a websocket handshake (session via Channels' AuthMiddleware)."""
    authorization = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")

    async def get_user():
        return scope["user"]

    return await authorize_principal(authorization, get_user, required_scope)


def close_code(exc: exceptions.APIException) -> int:
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        return CLOSE_UNAUTHENTICATED
    if isinstance(exc, exceptions.PermissionDenied):
        return CLOSE_FORBIDDEN
    if exc.status_code == 429:
        return CLOSE_TOO_MANY
    return CLOSE_BAD_REQUEST


def key_group(key: AgentKey) -> str:
    """The channel-layer group of every websocket a key has open."""
    return f"agent-key.{key.prefix}"


@receiver(post_save, sender=AgentKey)
def close_websockets_of_revoked_key(sender, instance: AgentKey, **kwargs) -> None:
    if instance.revoked:
        transaction.on_commit(lambda: _send_revoked(instance))


@receiver(post_delete, sender=AgentKey)
def close_websockets_of_deleted_key(sender, instance: AgentKey, **kwargs) -> None:
    transaction.on_commit(lambda: _send_revoked(instance))


def _send_revoked(key: AgentKey) -> None:
    try:
        async_to_sync(get_channel_layer().group_send)(key_group(key), {"type": "key.revoked"})
    except Exception:
        logger.exception("could not tell the websockets of revoked key %s to close", key.prefix)
