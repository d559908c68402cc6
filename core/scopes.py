"""What an agent key may do, and what a person's session may do through the API. Each app
declares the scopes its endpoints need in its own scopes.py (SCOPES: name -> what it allows;
ADMINISTRATIVE: those a key gets only when they are named; PERMISSIONS: name -> the Django model
permissions a staff session needs to use the scope, every one of them); this module gathers them
from every installed app, and declares core's own."""

from __future__ import annotations

from functools import cache
from importlib import import_module

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import module_has_submodule

SCOPES: dict[str, str] = {"metrics:read": "scrape /metrics (a key for Prometheus)"}
ADMINISTRATIVE: set[str] = {"metrics:read"}
PERMISSIONS: dict[str, tuple[str, ...]] = {"metrics:read": ("metrics.view_metricseries",)}


@cache
def _declared() -> tuple[dict[str, str], frozenset[str], dict[str, tuple[str, ...]]]:
    scopes: dict[str, str] = {}
    administrative: set[str] = set()
    permissions: dict[str, tuple[str, ...]] = {}
    for config in apps.get_app_configs():
        if module_has_submodule(config.module, "scopes"):
            module = import_module(f"{config.name}.scopes")
            scopes.update(module.SCOPES)
            administrative |= getattr(module, "ADMINISTRATIVE", set())
            permissions.update(getattr(module, "PERMISSIONS", {}))
    unmapped = scopes.keys() - permissions.keys()
    if unmapped:
        raise ImproperlyConfigured(f"Scopes without the permissions a session needs for them: {sorted(unmapped)}")
    return dict(sorted(scopes.items())), frozenset(administrative), permissions


def known() -> dict[str, str]:
    """Every scope of every app, by name, with what it allows."""
    return _declared()[0]


def agent_default() -> list[str]:
    """What a key gets when none are named: everything an agent does, nothing administrative."""
    scopes, administrative, _ = _declared()
    return [scope for scope in scopes if scope not in administrative]


def permissions_for(scope: str) -> tuple[str, ...]:
    """The model permissions ("app_label.codename") a staff session needs to use `scope`."""
    return _declared()[2][scope]
