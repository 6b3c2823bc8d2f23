"""The HTTP boundary to providers: clients, deadlines, size caps, and error classification.

    ProbeFailure(reason, detail)   a probe request failed; `reason` is a readiness Reason

Every httpx exception is mapped here, at the boundary, to a Reason and a message that names the
host and path but never the query string, a header, or a secret. httpx has no total deadline of
its own (a trickling server resets the read timeout with every byte), so each request runs under
`asyncio.timeout`.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from reconciler.core.readiness import Reason
from reconciler.core.spec import Endpoint, SecretRef
from reconciler.core.urls import UrlRejected, check_base_url, check_host_address

MAX_BODY_BYTES = 4 * 1024 * 1024  # a model list of 10,000 entries is well under 1 MiB
_DNS_ERRORS = ("name or service not known", "temporary failure in name resolution", "nodename")


class ProbeFailure(Exception):
    """A request to a provider failed; carries the readiness reason and a safe message."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class MissingSecret(ProbeFailure):
    """A secret the endpoint references is not set in the environment."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(Reason.secret_missing, f"{' and '.join(names)} not set")
        self.names = names


def where(url: httpx.URL | str) -> str:
    """`host:port/path` of a URL, without scheme, credentials or query: safe to show."""
    parts = urlsplit(str(url))
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.hostname}{port}{parts.path}"


def resolve_headers(endpoint: Endpoint, env: Mapping[str, str]) -> dict[str, str]:
    """The request headers with secrets read from `env` now, at the last moment."""
    missing = [ref.env for ref in endpoint.secret_refs() if not env.get(ref.env)]
    if missing:
        raise MissingSecret(sorted(set(missing)))
    unusable = [ref.env for ref in endpoint.secret_refs() if not _header_safe(env[ref.env])]
    if unusable:
        names = " and ".join(sorted(set(unusable)))
        raise ProbeFailure(
            Reason.secret_missing,
            f"{names} holds characters an HTTP header cannot carry (non-ASCII or line breaks)",
        )
    headers = {
        name: env[value.env] if isinstance(value, SecretRef) else value
        for name, value in endpoint.headers.items()
    }
    if endpoint.api_key is not None:
        headers.setdefault("Authorization", f"Bearer {env[endpoint.api_key.env]}")
    return headers


def _header_safe(value: str) -> bool:
    return value.isascii() and value.isprintable()


def make_client(endpoint: Endpoint, max_connections: int) -> httpx.AsyncClient:
    """One pooled client for one provider.

    Redirects are not followed (a redirect could carry the key to another host); proxies and
    .netrc from the environment are ignored (`trust_env=False`): a probe goes where the file says.
    """
    timeout = httpx.Timeout(
        endpoint.timeout_s, connect=endpoint.connect_timeout_s, pool=endpoint.connect_timeout_s
    )
    return httpx.AsyncClient(
        base_url=endpoint.base_url + "/",
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        verify=_tls_context(endpoint.verify_tls),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=4),
    )


@functools.cache
def _tls_context(verify: bool) -> ssl.SSLContext:
    # Building a context loads the CA bundle (tens of ms); a thousand providers share one.
    return httpx.create_ssl_context(verify=verify, trust_env=False)


async def check_destination(base_url: str) -> None:
    """The URL policy again, now, including what the host name resolves to."""
    try:
        check_base_url(base_url)
        host = urlsplit(base_url).hostname or ""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            except socket.gaierror:
                return  # the request itself reports the DNS failure with its reason
            for info in infos:
                check_host_address(str(info[4][0]))
    except UrlRejected as exc:
        raise ProbeFailure(Reason.provider_unreachable, f"refused to connect: {exc}") from None


@dataclass(frozen=True, slots=True)
class Answer:
    """A response read in full (within the size cap)."""

    status: int
    body: bytes
    elapsed_ms: float
    retry_after: str | None = None

    def json(self, what: str) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise ProbeFailure(Reason.bad_response, f"{what} is not JSON") from None


async def request(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    headers: Mapping[str, str],
    *,
    json_body: Any = None,
    max_bytes: int = MAX_BODY_BYTES,
) -> Answer:
    """One request, read within the size cap; transport errors become `ProbeFailure`s.

    The caller bounds the total time with `asyncio.timeout`.
    """
    url = client.base_url.join(path.lstrip("/"))
    started = time.perf_counter()
    try:
        async with client.stream(method, url, headers=headers, json=json_body) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():  # decoded: gzip is fine
                body += chunk
                if len(body) > max_bytes:
                    raise ProbeFailure(
                        Reason.bad_response,
                        f"{where(url)} sent more than {max_bytes // 1024} KiB; stopped reading",
                    )
            status = response.status_code
            retry_after = response.headers.get("retry-after")
    except httpx.HTTPError as exc:
        raise classify(exc, url) from None
    return Answer(status, bytes(body), (time.perf_counter() - started) * 1000, retry_after)


def classify(exc: httpx.HTTPError, url: httpx.URL) -> ProbeFailure:
    """The readiness reason of a transport error, with a message that holds no secret."""
    place = where(url)
    if isinstance(exc, httpx.PoolTimeout):
        return ProbeFailure(Reason.timeout, f"no free local connection to {place} in time")
    if isinstance(exc, httpx.ConnectTimeout):
        return ProbeFailure(Reason.timeout, f"connecting to {place} timed out")
    if isinstance(exc, httpx.TimeoutException):
        return ProbeFailure(Reason.timeout, f"{place} did not answer in time")
    if isinstance(exc, httpx.ConnectError):
        cause = str(exc).lower()
        if any(marker in cause for marker in _DNS_ERRORS):
            host = urlsplit(str(url)).hostname
            return ProbeFailure(Reason.provider_unreachable, f"DNS lookup of {host} failed")
        if "refused" in cause or _caused_by(exc, ConnectionRefusedError):
            return ProbeFailure(Reason.provider_unreachable, f"connection to {place} refused")
        if "certificate" in cause or "ssl" in cause:
            return ProbeFailure(Reason.provider_unreachable, f"TLS handshake with {place} failed")
        return ProbeFailure(Reason.provider_unreachable, f"cannot connect to {place}")
    if isinstance(exc, httpx.RemoteProtocolError):
        return ProbeFailure(Reason.bad_response, f"{place} broke the HTTP protocol")
    if isinstance(exc, httpx.TransportError):
        return ProbeFailure(Reason.provider_unreachable, f"connection to {place} failed")
    return ProbeFailure(Reason.bad_response, f"request to {place} failed ({type(exc).__name__})")


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        if isinstance(seen, ExceptionGroup):
            return any(_caused_by(inner, kind) for inner in seen.exceptions)
        seen = seen.__cause__ or seen.__context__
    return False


def check_status(answer: Answer, url_path: str, *, loading_503: bool = False) -> None:
    """Raise the `ProbeFailure` for a non-2xx answer."""
    status = answer.status
    if 200 <= status < 300:
        return
    if status in (401, 403):
        raise ProbeFailure(Reason.auth_failed, f"{url_path} answered {status}: key refused")
    if status == 503 and (loading_503 or b"loading model" in answer.body.lower()):
        raise ProbeFailure(Reason.loading, f"{url_path} answered 503: loading model")
    if status >= 500:
        raise ProbeFailure(Reason.server_error, f"{url_path} answered {status}")
    if 300 <= status < 400:
        raise ProbeFailure(
            Reason.bad_response,
            f"{url_path} answered a redirect ({status}), which is not followed; "
            "set base_url to the final address",
        )
    raise ProbeFailure(Reason.bad_response, f"{url_path} answered {status}")
