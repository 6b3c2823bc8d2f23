"""Every outbound connection passes the egress policy here, at the transport seam.

    EgressRefused     the policy refused the address a connection would reach
    Resolver          a name -> addresses lookup; injectable, so tests never ask the machine's DNS

`guarded_transport()` is the only way reconciler's HTTP clients are made (`http.make_client`):
its network backend resolves the host itself, checks every address it would connect to against
`reconciler.core.urls.check_address`, and connects to that address, never to the name again. So a
name that resolves to a metadata address, or that resolves differently a second time (DNS
rebinding), is refused at the moment of connecting, whoever made the request: a probe, a scoring
call or a plugin's driver. TLS still verifies the certificate against the name in the URL.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Protocol

import httpcore
import httpx

from reconciler.core.urls import (
    Address,
    UrlRejected,
    check_address,
    check_host,
    numeric_address,
)


class EgressRefused(httpcore.ConnectError):
    """The egress policy refused a connection; the message names the reason, not the URL."""


class Resolver(Protocol):
    """Looks up the addresses of a host name."""

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of `host`; raises `OSError` when it has none."""
        ...


class SystemResolver:
    """The machine's resolver, through the event loop's `getaddrinfo`."""

    async def resolve(self, host: str, port: int) -> list[str]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


class StaticResolver:
    """A fixed table of names and addresses; any other name does not resolve. For tests."""

    def __init__(self, table: dict[str, Iterable[str]] | None = None) -> None:
        self.table = {name.lower(): list(addresses) for name, addresses in (table or {}).items()}
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        found = self.table.get(host.lower().rstrip("."))
        if not found:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(found)


class _Default:
    resolver: Resolver = SystemResolver()


def current_resolver() -> Resolver:
    """The resolver new clients use."""
    return _Default.resolver


@contextmanager
def using_resolver(resolver: Resolver) -> Iterator[Resolver]:
    """Make new clients resolve names through `resolver` while the block runs."""
    previous, _Default.resolver = _Default.resolver, resolver
    try:
        yield resolver
    finally:
        _Default.resolver = previous


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """A network backend that connects only to addresses the egress policy allows."""

    def __init__(self, resolver: Resolver, inner: httpcore.AsyncNetworkBackend | None = None):
        self._resolver = resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._addresses(host, port, timeout)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None, "a host resolves to at least one address"
        raise failure

    async def _addresses(self, host: str, port: int, timeout: float | None) -> list[Address]:
        literal = numeric_address(host)
        if literal is not None:
            found = [literal]
        else:
            try:
                check_host(host)
            except UrlRejected as exc:
                raise EgressRefused(str(exc)) from None
            try:
                async with asyncio.timeout(timeout):
                    names = await self._resolver.resolve(host, port)
            except TimeoutError:
                raise httpcore.ConnectTimeout(f"DNS lookup of {host} timed out") from None
            except OSError as exc:
                raise httpcore.ConnectError(
                    f"[Errno -2] Name or service not known ({exc})"
                ) from None
            found = [a for a in map(numeric_address, names) if a is not None]
            if not found:
                raise httpcore.ConnectError("[Errno -2] Name or service not known")
        for address in found:
            try:
                check_address(address)
            except UrlRejected as exc:
                what = "the address" if literal is not None else f"{host} resolves to {address}:"
                raise EgressRefused(f"{what} {exc}") from None
        return found

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise EgressRefused("connections to unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, with its connection pool on a `GuardedBackend`."""

    def __init__(
        self, *, ssl_context: ssl.SSLContext, limits: httpx.Limits, resolver: Resolver | None = None
    ) -> None:
        super().__init__(verify=ssl_context, limits=limits, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(resolver or current_resolver()),
        )
