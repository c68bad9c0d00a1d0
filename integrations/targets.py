"""Where a webhook may be sent: http(s) URLs whose host resolves only to public addresses.

A webhook URL is typed by a user, and the server POSTs to it: without this check, anyone who may
register an endpoint could make the server reach its own network (SSRF: the metadata service,
the database, an admin port on 127.0.0.1). Every address the host resolves to must be public
(not private, loopback, link-local, multicast, reserved or unspecified), checked at registration
and again before each attempt, and the request goes to the address that was checked (no second
DNS lookup an attacker could answer differently). Redirects are never followed.
WEBHOOK_ALLOW_LOOPBACK=1 (the tests) also allows 127.0.0.0/8 and ::1, and nothing else private.
"""

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

# A host name as DNS knows it (letters, digits, hyphens, dots; IDN names in their xn-- form too).
_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$"
)


class TargetRefused(ValueError):
    """The URL is not one a webhook may be sent to; the message says why."""


@dataclass(frozen=True)
class Target:
    url: str
    host: str
    address: str  # the checked IP address the request connects to


def url_errors(url: str) -> list[str]:
    """What is wrong with `url` as a webhook URL, without a DNS lookup (forms and the API)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ["is not a valid URL"]
    if parts.scheme not in ("http", "https"):
        return ["must start with http:// or https://"]
    if not parts.hostname:
        return ["must name a host"]
    if parts.username or parts.password:
        return ["must not carry a user name or password; the signature authenticates each request"]
    if port == 0:
        return ["must not use port 0"]
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        try:
            ascii_host = parts.hostname.encode("idna").decode("ascii").lower()
        except (UnicodeError, ValueError):
            return ["must name a valid host"]
        if not _HOST_NAME.match(ascii_host):
            return ["must name a valid host"]
        if parts.hostname.lower() in ("localhost", "localhost.localdomain") and not _loopback_allowed():
            return ["must not point at this server (localhost)"]
        return []
    if reason := _refused(address):
        return [f"must not point at {reason} address {address}"]
    return []


def _loopback_allowed() -> bool:
    return bool(getattr(settings, "WEBHOOK_ALLOW_LOOPBACK", False))


def _refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "" if _loopback_allowed() else "a loopback"
    for name in ("private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(address, f"is_{name}"):
            return f"a {name.replace('_', '-')}"
    if not address.is_global:
        return "a non-public"
    return ""


def resolve(url: str) -> Target:
    """The URL's host resolved and checked (raises TargetRefused); connect to `address`."""
    if errors := url_errors(url):
        raise TargetRefused(f"the URL {errors[0]}")
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise TargetRefused(f"cannot resolve {parts.hostname}: {exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise TargetRefused(f"{parts.hostname} has no address")
    for text in addresses:
        if reason := _refused(ipaddress.ip_address(text.split("%", 1)[0])):
            raise TargetRefused(f"{parts.hostname} resolves to {reason} address {text}")
    return Target(url=url, host=parts.hostname or "", address=addresses[0])
