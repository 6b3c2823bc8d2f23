"""Refuse, and record, every connection or DNS lookup that would leave this machine.

Tests send traffic only to 127.0.0.0/8 and ::1: a connection to any other address, and a DNS
query for any name but `localhost`, raises `OffLoopback` where it is made and is recorded, so
that the test fails even when the code under test swallows the error. Installed in the test
process by an autouse fixture, and in the subprocesses tests start through `sitecustomize.py`
beside this file.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})
violations: list[str] = []
_installed = False


class OffLoopback(OSError):
    """A test tried to reach beyond loopback."""


def _loopback_host(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    name = str(host).split("%", 1)[0].strip("[]")
    if name.lower() in LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _literal(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    try:
        ipaddress.ip_address(str(host).split("%", 1)[0].strip("[]"))
    except ValueError:
        return False
    return True


def _refuse(what: str) -> None:
    violations.append(what)
    raise OffLoopback(f"test network guard: {what} would leave this machine")


def install() -> None:
    """Patch socket.getaddrinfo and socket.socket.connect/connect_ex; idempotent."""
    global _installed
    if _installed:
        return
    _installed = True
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        # An address literal needs no DNS query; where it connects is checked by connect().
        if not _loopback_host(host) and not _literal(host):
            _refuse(f"a DNS lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback_host(address[0]):
            _refuse(f"a connection to {address[0]!r}")

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
