"""Whether a request comes from an address a setting lists (METRICS_ALLOWED_IPS, KEYLESS_WRITES_FROM).

The address is REMOTE_ADDR, the client as the web server sees it: uvicorn takes it from
X-Forwarded-For only when the connection comes from a proxy it trusts (--forwarded-allow-ips), so
a client cannot claim another address; behind a proxy that is not trusted, every request comes from
the proxy's address.
"""

from __future__ import annotations

import functools
import ipaddress

from django.http import HttpRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.cache
def networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """Addresses or networks (`10.0.0.0/8`, `::1`) parsed; ValueError names an entry that is neither."""
    parsed = []
    for entry in entries:
        try:
            parsed.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an address or network") from None
    return tuple(parsed)


def client_in(request: HttpRequest, entries: list[str]) -> bool:
    """Whether the request's client address is one of `entries` (addresses or networks)."""
    if not entries:
        return False
    try:
        client = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    client = getattr(client, "ipv4_mapped", None) or client  # ::ffff:10.0.0.1 from a dual-stack socket
    return any(client in network for network in networks(tuple(entries)))
