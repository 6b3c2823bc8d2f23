"""The endpoint URL policy (DESIGN section 1). Purely computational.

http or https only; no credentials in the URL; no query or fragment; never a link-local or
cloud-metadata address. Loopback and private addresses are fine: Ollama usually lives there.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

BLOCKED_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
_LINK_LOCAL_V4 = ipaddress.ip_network("169.254.0.0/16")
_LINK_LOCAL_V6 = ipaddress.ip_network("fe80::/10")


class UrlRejected(ValueError):
    """The URL breaks the policy. The message never repeats the URL (it may hold a secret)."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def check_base_url(url: str) -> str:
    """Return `url` without a trailing slash if it passes the policy, else raise `UrlRejected`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlRejected(
            "the URL cannot be parsed (bad port or brackets)",
            "write it as http://host:port/path",
        ) from None
    if parts.scheme not in ("http", "https"):
        raise UrlRejected(
            f"the URL scheme must be http or https, not {parts.scheme or 'missing'!r}",
            "write it as http://host:port or https://host",
        )
    if "@" in parts.netloc:
        raise UrlRejected(
            "the URL must not hold credentials (user:password@)",
            "remove them and set `api_key: {env: NAME}` or a header with `{env: NAME}`",
        )
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise UrlRejected(
            "the base URL must not have a query string or fragment",
            "remove everything from '?' or '#' on",
        )
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UrlRejected("the URL has no host", "write it as http://host:port")
    if port == 0:
        raise UrlRejected("port 0 is not a valid port", "use the port the server listens on")
    _check_host(host)
    return url.rstrip("/")


def check_host_address(host: str) -> None:
    """Raise `UrlRejected` when `host` (a name or an address) is one the policy forbids."""
    _check_host(host.rstrip(".").lower())


def _check_host(host: str) -> None:
    if host.lower() in BLOCKED_HOSTS:
        raise UrlRejected(
            "the host is a cloud metadata service, which is never a valid endpoint",
            "point base_url at the model server",
        )
    address, standard = _as_address(host)
    if address is None:
        return
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    written = "" if standard else f" (the host is {address}, written as a number)"
    if address.is_unspecified:
        raise UrlRejected(
            f"the unspecified address (0.0.0.0 or ::) is not a destination{written}",
            "use 127.0.0.1 for this machine",
        )
    if address in _LINK_LOCAL_V4 or address in _LINK_LOCAL_V6:
        raise UrlRejected(
            "link-local addresses (169.254.0.0/16, fe80::/10) are not allowed: they reach "
            f"cloud metadata services{written}",
            "use the server's loopback, private or public address",
        )
    if not standard:
        raise UrlRejected(
            "the host is a number in a non-standard form, which hides the real address",
            f"write the address in dotted decimal, e.g. {address}",
        )


def _as_address(
    host: str,
) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address | None, bool]:
    """The address `host` reaches, if it is one, and whether it is written the standard way."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]), True
    except ValueError:
        pass
    # Forms like 2852039166, 0xa9fea9fe or 169.254.43518 reach an address too; inet_aton
    # decodes them as the resolver would, with no I/O.
    if all(c in "0123456789abcdefxABCDEFX." for c in host):
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None, True
        return address, str(address) == host
    return None, True
