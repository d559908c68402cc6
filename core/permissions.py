"""Who may do what: an agent key within its scopes and agents; a staff session within the scopes
its model permissions grant (core.scopes.permissions_for), for any agent."""

from __future__ import annotations

import functools
from collections.abc import Callable

from rest_framework import exceptions, permissions

from core.models import AgentKey
from core.scopes import permissions_for

SAFE_ALIASES = {"HEAD": "GET"}


def is_staff(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active and user.is_staff)


def missing_permissions(user, scope: str) -> list[str]:
    """The model permissions a staff session lacks to use `scope` (none: it may)."""
    return [perm for perm in permissions_for(scope) if not user.has_perm(perm)]


def lacks_permissions(missing: list[str]) -> exceptions.PermissionDenied:
    return exceptions.PermissionDenied(
        f"Your account lacks the permissions this needs: {', '.join(missing)}.", code="missing_permission"
    )


class HasScope(permissions.BasePermission):
    """Checks the scope a view names for the request's method in `required_scopes`: a staff
    session needs the model permissions behind it, a key the scope itself."""

    def has_permission(self, request, view) -> bool:
        method = SAFE_ALIASES.get(request.method, request.method)
        scope = getattr(view, "required_scopes", {}).get(method)
        if is_staff(request.user):
            if scope is None:
                return method == "OPTIONS"
            if missing := missing_permissions(request.user, scope):
                raise lacks_permissions(missing)
            return True
        key = request.auth
        if not isinstance(key, AgentKey):
            self.message = "Log in as staff or send an agent key with this scope."
            return False
        if scope is None:
            return method == "OPTIONS"
        if not key.has_scope(scope):
            self.message = f"This key lacks the '{scope}' scope."
            self.code = "missing_scope"
            return False
        return True


def may_act_as(request, agent_id: str) -> bool:
    if is_staff(request.user):
        return True
    return isinstance(request.auth, AgentKey) and request.auth.may_act_as(agent_id)


def key_checker(key: AgentKey | None) -> Callable[[str], bool]:
    """`may_act_as` for one request's key (None: staff, who may act as any agent), remembering each
    answer (a batch names few agents, many times); its `key` is the key, for the bounds a batch
    counts per key."""
    checker = functools.cache(key.may_act_as if key is not None else lambda agent_id: True)
    checker.key = key
    return checker


def agent_checker(request) -> Callable[[str], bool]:
    """key_checker for a DRF view's request (async views have the key from core.api.authorize)."""
    if is_staff(request.user):
        return key_checker(None)
    if not isinstance(request.auth, AgentKey):  # HasScope lets no such request through
        raise exceptions.NotAuthenticated
    return key_checker(request.auth)


def ensure_may_act_as(request, agent_id: str) -> None:
    if not may_act_as(request, agent_id):
        raise agent_forbidden(agent_id)


def ensure_key_may_act_as(key: AgentKey | None, agent_id: str) -> None:
    """`ensure_may_act_as` for async views, which get the key from core.api.authorize (None: staff)."""
    if key is not None and not key.may_act_as(agent_id):
        raise agent_forbidden(agent_id)


def resolve_agent(key: AgentKey | None, agent_id: str | None, field: str) -> str:
    """`agent_id` if the key may act as it; when not given, the key's only agent. For async views."""
    if agent_id:
        ensure_key_may_act_as(key, agent_id)
        return agent_id
    if key is not None and key.sole_agent:
        return key.sole_agent
    who = "This key may act as several agents" if key is not None else "Staff act as no agent of their own"
    raise exceptions.ValidationError({field: [f"{who}: name the agent."]})


def agent_forbidden(agent_id: str) -> exceptions.PermissionDenied:
    return exceptions.PermissionDenied(f"This key may not act as agent '{agent_id}'.", code="agent_forbidden")
