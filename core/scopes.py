"""What an agent key may do. Each app declares the scopes its endpoints need in its own
scopes.py (SCOPES: name -> what it allows; ADMINISTRATIVE: those a key gets only when they are
named); this module gathers them from every installed app, and declares core's own."""

from __future__ import annotations

from functools import cache
from importlib import import_module

from django.apps import apps
from django.utils.module_loading import module_has_submodule

SCOPES: dict[str, str] = {"metrics:read": "scrape /metrics (a key for Prometheus)"}
ADMINISTRATIVE: set[str] = {"metrics:read"}


@cache
def _declared() -> tuple[dict[str, str], frozenset[str]]:
    scopes: dict[str, str] = {}
    administrative: set[str] = set()
    for config in apps.get_app_configs():
        if module_has_submodule(config.module, "scopes"):
            module = import_module(f"{config.name}.scopes")
            scopes.update(module.SCOPES)
            administrative |= getattr(module, "ADMINISTRATIVE", set())
    return dict(sorted(scopes.items())), frozenset(administrative)


def known() -> dict[str, str]:
    """Every scope of every app, by name, with what it allows."""
    return _declared()[0]


def agent_default() -> list[str]:
    """What a key gets when none are named: everything an agent does, nothing administrative."""
    scopes, administrative = _declared()
    return [scope for scope in scopes if scope not in administrative]
