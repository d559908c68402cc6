"""Agent-key authentication for every API request (staff use the session)."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from core.models import AgentKey

KEY_SCHEMES = ("api-key", "bearer")


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


def key_from_header(header: str) -> str | None:
    """The key in `Api-Key <key>` or `Bearer <key>`, or None when the header is something else."""
    scheme, _, key = header.strip().partition(" ")
    if scheme.lower() not in KEY_SCHEMES:
        return None
    if not key.strip():
        raise exceptions.AuthenticationFailed("The Authorization header names a scheme but no key.")
    return key.strip()


def authenticate_key(raw_key: str) -> AgentKey:
    """The usable key for `raw_key`; AuthenticationFailed when unknown, revoked or expired."""
    try:
        key = AgentKey.objects.get_from_key(raw_key)
    except AgentKey.DoesNotExist:
        raise exceptions.AuthenticationFailed("Unknown or revoked API key.", code="invalid_key") from None
    if key.has_expired:
        raise exceptions.AuthenticationFailed("This API key has expired.", code="expired_key")
    key.touch()
    return key


class AgentKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        raw_key = key_from_header(request.META.get("HTTP_AUTHORIZATION", ""))
        if raw_key is None:
            return None
        key = authenticate_key(raw_key)
        return KeyUser(key), key

    def authenticate_header(self, request) -> str:
        return 'Api-Key realm="api"'


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
