"""System checks of the settings that let a request in without a key (`manage.py check`, doctor)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from core.addresses import networks

ADDRESS_SETTINGS = ("METRICS_ALLOWED_IPS", "KEYLESS_WRITES_FROM")


@register(Tags.security)
def unkeyed_addresses(app_configs, **kwargs) -> list:
    problems = [error for name in ADDRESS_SETTINGS if (error := _unreadable(name))]
    if problems:
        return problems
    if settings.KEYLESS_WRITES_FROM and not settings.KEYLESS_KEY:
        return [
            Error("KEYLESS_WRITES_FROM is set but KEYLESS_KEY is not.", hint="Name the agent key they act as.", id="core.E002")
        ]
    wide = [str(network) for network in networks(tuple(settings.KEYLESS_WRITES_FROM)) if not network.is_loopback]
    if not wide:
        return []
    return [
        Warning(
            f"KEYLESS_WRITES_FROM: any client at {', '.join(wide)} acts as the agent key {settings.KEYLESS_KEY!r}, keyless.",
            hint="List only the hosts of the agents that send no key (or loopback), never a proxy's address.",
            id="core.W001",
        )
    ]


def _unreadable(name: str) -> Error | None:
    try:
        networks(tuple(getattr(settings, name)))
    except ValueError as exc:
        return Error(f"{name}: {exc}.", hint="List addresses or networks, e.g. 127.0.0.1,10.0.0.0/8.", id="core.E001")
    return None
