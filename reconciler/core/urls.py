"""The egress policy (DESIGN sections 1 and 9). Purely computational, no side-effects.

A provider URL is http or https, holds no credentials, query or fragment, and never names a
link-local or cloud-metadata destination. Loopback and private addresses are fine: Ollama usually
lives there. The host is normalised the way an HTTP client and a resolver will read it (Unicode
full stops, compatibility forms, IDNA, trailing dots, numeric forms such as `2852039166` or
`0xa9.0xfe.0xa9.0xfe`, and IPv6 forms that carry an IPv4 address), so a spelling cannot smuggle a
forbidden address past the check. The same `check_address` is applied again, at connection time,
to every address a name resolves to (`reconciler.adapters.providers.egress`).
"""

from __future__ import annotations

import ipaddress
import unicodedata
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

BLOCKED_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
        "metadata.azure.internal",
    }
)
# Cloud metadata services outside the link-local ranges.
_METADATA = {
    ipaddress.ip_network("fd00:ec2::254/128"): "AWS",
    ipaddress.ip_network("100.100.100.200/32"): "Alibaba Cloud",
    ipaddress.ip_network("192.0.0.192/32"): "Oracle Cloud",
}
_LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_SIXTOFOUR = ipaddress.ip_network("2002::/16")
_COMPATIBLE = ipaddress.ip_network("::/96")
# Full stops a resolver or an IDNA encoder reads as '.': ideographic, full-width, half-width.
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_NUMERIC_CHARS = frozenset("0123456789abcdefx.")


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
    if any(c.isspace() or not c.isprintable() for c in url):
        raise UrlRejected(
            "the URL holds white space or control characters",
            "write the URL without spaces; percent-encode them in a path (%20)",
        )
    if not (parts.hostname or "").strip("."):
        raise UrlRejected("the URL has no host", "write it as http://host:port")
    if port == 0:
        raise UrlRejected("port 0 is not a valid port", "use the port the server listens on")
    check_host(parts.hostname or "")
    return url.rstrip("/")


def check_host(host: str) -> None:
    """Raise `UrlRejected` when `host` (a name or an address, in any spelling) is forbidden."""
    name = normalise_host(host)
    address = numeric_address(name)
    if address is None:
        if name in BLOCKED_HOSTS:
            raise UrlRejected(
                "the host is a cloud metadata service, which is never a valid endpoint",
                "point base_url at the model server",
            )
        return
    written = host.strip("[]").rstrip(".").split("%", 1)[0]
    standard = _is_address(written)
    try:
        check_address(address)
    except UrlRejected as exc:
        if standard:
            raise
        note = f" (the host is {address}, written in another form)"
        raise UrlRejected(f"{exc}{note}", exc.hint) from None
    if not standard:
        raise UrlRejected(
            "the host is an address written in a non-standard form, which hides where it goes",
            f"write the address the standard way: {address}",
        )


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def normalise_host(host: str) -> str:
    """The host as a client and a resolver read it: ASCII, lower case, no trailing dot.

    Raises `UrlRejected` for a name that no IDNA encoder accepts.
    """
    name = unicodedata.normalize("NFKC", host.strip("[]")).translate(_DOTS).lower()
    if not name.isascii():
        import idna  # its tables load only for a name that needs them

        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            raise UrlRejected(
                "the host is not a valid internationalised domain name",
                "write the host name in ASCII (punycode, xn--...) or fix its characters",
            ) from None
    return name.rstrip(".")


def numeric_address(host: str) -> Address | None:
    """The address `host` stands for when it is one, in any form a resolver accepts."""
    bare = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if bare and set(bare.lower()) <= _NUMERIC_CHARS:
        return _inet_aton(bare.lower())
    return None


def _inet_aton(text: str) -> ipaddress.IPv4Address | None:
    """BSD `inet_aton`: 1 to 4 parts, each decimal, octal (0...) or hex (0x...)."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers = []
    for part in parts:
        try:
            if part.startswith("0x"):
                numbers.append(int(part[2:] or "0", 16))
            elif part.startswith("0") and len(part) > 1:
                numbers.append(int(part[1:], 8))
            else:
                numbers.append(int(part, 10))
        except ValueError:
            return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for index, number in enumerate(head):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries: mapped, compatible, NAT64, 6to4 or Teredo."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.teredo is not None:
        return address.teredo[1]
    if address.sixtofour is not None:
        return address.sixtofour
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in net for net in _NAT64):
        return low
    if address in _COMPATIBLE and int(address) > 1:
        return low
    return None


def check_address(address: Address) -> None:
    """Raise `UrlRejected` when `address`, or the IPv4 address inside it, is forbidden."""
    inner = embedded_ipv4(address)
    for candidate in (address, inner):
        if candidate is not None:
            _check_one(candidate, shown=address)


def _check_one(address: Address, shown: Address) -> None:
    inside = "" if address == shown else f" ({shown} carries {address})"
    if address.is_unspecified or address in _THIS_NETWORK:
        raise UrlRejected(
            f"the address {address} is not a destination{inside}",
            "use 127.0.0.1 for this machine",
        )
    if address.is_multicast or address == ipaddress.IPv4Address("255.255.255.255"):
        raise UrlRejected(
            f"the address {address} is multicast or broadcast, not a server{inside}",
            "use the server's own address",
        )
    if any(address in net for net in _LINK_LOCAL):
        raise UrlRejected(
            "link-local addresses (169.254.0.0/16, fe80::/10) are not allowed: they reach "
            f"cloud metadata services{inside}",
            "use the server's loopback, private or public address",
        )
    for network, cloud in _METADATA.items():
        if address in network:
            raise UrlRejected(
                f"{address} is the {cloud} metadata service, never a valid endpoint{inside}",
                "point base_url at the model server",
            )


def check_host_address(host: str) -> None:
    """Raise `UrlRejected` when `host` (a name or an address) is one the policy forbids."""
    check_host(host)
