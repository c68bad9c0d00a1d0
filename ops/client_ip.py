"""The client's address as the login lockout counts it, behind a known number of reverse proxies.

Each proxy appends the address it received the connection from to X-Forwarded-For, so with N
trusted proxies in front of the app the client is the N-th entry from the right: everything left
of it was written by the client and can be forged. With no trusted proxy (the default) the
connection's own address is the client, and X-Forwarded-For is ignored.
"""

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip_address(request: HttpRequest) -> str | None:
    """REMOTE_ADDR, or the X-Forwarded-For entry TRUSTED_PROXY_COUNT hops from the right."""
    remote_addr = request.META.get("REMOTE_ADDR") or None
    trusted = settings.TRUSTED_PROXY_COUNT
    if trusted <= 0:
        return remote_addr
    forwarded = [entry.strip() for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [entry for entry in forwarded if entry]
    if len(forwarded) < trusted:
        # The request skipped part of the proxy chain (a probe inside the network): nothing to trust.
        return remote_addr
    candidate = forwarded[-trusted]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote_addr
