"""Where a webhook may point. At registration: an http(s) URL of the shape URL_PATTERN says (the OpenAPI
schema carries the same pattern), and, unless `TUNEFORGE_WEBHOOK_ALLOW_PRIVATE` is set, not a
loopback/private/link-local IP literal or `localhost`. Before every attempt, the host is resolved and
each of its addresses checked the same way (DNS may point anywhere, and may change after registration)."""
from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

from app.core.config import get_settings

MAX_URL_LENGTH = 2048
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
# scheme, host name or IPv4 (no credentials, no IPv6 literal), optional port, printable ASCII after
URL_PATTERN = rf"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._~%!$&'()*+,;=-]+(:{_PORT})?([/?#][!-~]*)?$"
SHAPE = ("url must be an http:// or https:// URL: a host name or IPv4 address (no IPv6 literal), an optional "
         "port, no credentials (verify deliveries with the webhook-signature header instead), printable ASCII "
         "without spaces (percent-encode the rest), e.g. https://example.com/hooks/tuneforge.")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def url_problem(url: str, *, resolve: bool) -> str | None:
    """Why `url` may not receive webhooks, or None when it may. `resolve`: look its host up and check
    every address (before an attempt), rather than only an IP literal or `localhost` (registration)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("http", "https"):
        return f"url must be an http:// or https:// URL, not {scheme or 'schemeless'!r}."
    if len(url) > MAX_URL_LENGTH:
        return f"url is {len(url)} characters long; the limit is {MAX_URL_LENGTH}."
    if not re.fullmatch(URL_PATTERN, url):
        return SHAPE
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if scheme == "https" else 80)
    allow_private = get_settings().webhook_allow_private
    if resolve:
        try:
            addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0])
                         for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
        except (OSError, UnicodeError) as exc:
            return f"url host {host!r} does not resolve ({exc}); check its spelling and DNS."
    elif host == "localhost" or host.endswith(".localhost"):
        addresses = [ipaddress.ip_address("127.0.0.1")]
    else:
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            return None  # a name: checked when it is resolved, before each attempt
    private = next((address for address in addresses if not is_public(address)), None)
    if private is None or allow_private:
        return None
    return (f"url host {host!r} resolves to {private}, a private or local address; webhooks go to public "
            "addresses only (an operator may allow private ones with TUNEFORGE_WEBHOOK_ALLOW_PRIVATE=true).")


def is_public(address: Address) -> bool:
    """Globally routable unicast (an IPv4-mapped IPv6 address is judged as its IPv4 address)."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return address.is_global and not address.is_multicast
