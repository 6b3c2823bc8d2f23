"""The HTTP boundary to providers: clients, deadlines, size caps, and error classification.

    ProbeFailure(reason, detail)   a probe request failed; `reason` is a readiness Reason

Every httpx exception is mapped here, at the boundary, to a Reason and a message that names the
host and path but never the query string, a header, or a secret. httpx has no total deadline of
its own (a trickling server resets the read timeout with every byte), so each request runs under
`asyncio.timeout`. Every client is made by `make_client`, on the egress-guarded transport; every
answer is read within a cap on its compressed and inflated size, and parsed as strict JSON.
"""

from __future__ import annotations

import functools
import ssl
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from reconciler.adapters import secrets
from reconciler.adapters.providers.bounded import (
    ACCEPT_ENCODING,
    BadEncoding,
    Inflater,
    TooLarge,
)
from reconciler.adapters.providers.driver import bearer
from reconciler.adapters.providers.egress import EgressRefused, GuardedTransport, Resolver
from reconciler.core import jsonsafe
from reconciler.core.readiness import Reason
from reconciler.core.spec import Endpoint, SecretRef
from reconciler.core.text import untrusted

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


def resolve_headers(
    endpoint: Endpoint,
    env: Mapping[str, str],
    auth: Callable[[str | None], Mapping[str, str]] = bearer,
) -> dict[str, str]:
    """The request headers with secrets read from `env` now, at the last moment.

    `auth` (the driver's) says how the type sends its key; headers the file sets win.
    """
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
    secrets.remember(env[ref.env] for ref in endpoint.secret_refs())
    headers = {
        name: env[value.env] if isinstance(value, SecretRef) else value
        for name, value in endpoint.headers.items()
    }
    api_key = env[endpoint.api_key.env] if endpoint.api_key is not None else None
    for name, value in auth(api_key).items():
        if not any(name.lower() == given.lower() for given in headers):
            headers[name] = value
    return headers


def provider_text(text: str, limit: int = 256) -> str:
    """A name or message a provider sent, safe to keep and show: no secret, no control codes.

    A real model name holds neither, so a name that did still matches nothing by accident.
    """
    return untrusted(text, secrets.known(), limit)


def _header_safe(value: str) -> bool:
    return value.isascii() and value.isprintable()


def make_client(
    endpoint: Endpoint,
    max_connections: int,
    resolver: Resolver | None = None,
    keepalive_s: float = 5.0,
) -> httpx.AsyncClient:
    """One pooled client for one provider, on the egress-guarded transport.

    Redirects are not followed (a redirect could carry the key to another host); proxies and
    .netrc from the environment are ignored (`trust_env=False`): a probe goes where the file says.
    Only the encodings `request` can inflate within its cap are asked for.
    """
    timeout = httpx.Timeout(
        endpoint.timeout_s, connect=endpoint.connect_timeout_s, pool=endpoint.connect_timeout_s
    )
    # Every connection a provider may have open is kept for the next call: closing all but a
    # few made nearly every call at concurrency 16 open a new connection.
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=keepalive_s,
    )
    transport = GuardedTransport(
        ssl_context=_tls_context(endpoint.verify_tls), limits=limits, resolver=resolver
    )
    return httpx.AsyncClient(
        base_url=endpoint.base_url + "/",
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        transport=transport,
        headers={"Accept-Encoding": ACCEPT_ENCODING},
    )


@functools.cache
def _tls_context(verify: bool) -> ssl.SSLContext:
    # Building a context loads the CA bundle (tens of ms); a thousand providers share one.
    return httpx.create_ssl_context(verify=verify, trust_env=False)


@dataclass(frozen=True, slots=True)
class Answer:
    """A response read in full (within the size cap)."""

    status: int
    body: bytes
    elapsed_ms: float
    retry_after: str | None = None

    def json(self, what: str, *, lenient_ints: bool = False) -> Any:
        """The body as strict JSON (no NaN, bounded depth and numbers)."""
        try:
            return jsonsafe.loads(self.body, lenient_ints=lenient_ints)
        except jsonsafe.JsonRejected as exc:
            raise ProbeFailure(Reason.bad_response, f"{what}: {exc}") from None


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
    url = _joined(client, path)
    started = time.perf_counter()
    try:
        async with client.stream(method, url, headers=headers, json=json_body) as response:
            reader = Inflater(response.headers.get("content-encoding"), max_bytes)
            async for chunk in response.aiter_raw():
                reader.feed(chunk)
            status = response.status_code
            retry_after = response.headers.get("retry-after")
    except TooLarge as exc:
        raise ProbeFailure(
            Reason.bad_response, f"{where(url)} sent {exc}; stopped reading"
        ) from None
    except BadEncoding as exc:
        raise ProbeFailure(Reason.bad_response, f"{where(url)}: {exc}") from None
    except httpx.HTTPError as exc:
        raise classify(exc, url) from None
    elapsed = (time.perf_counter() - started) * 1000
    return Answer(status, bytes(reader.body), elapsed, retry_after)


# Each client's URLs by path: a kept client asks for the same few paths round after round, and
# resolving one against the base URL costs more than the rest of building the request.
_JOINS: weakref.WeakKeyDictionary[httpx.AsyncClient, tuple[httpx.URL, dict[str, httpx.URL]]]
_JOINS = weakref.WeakKeyDictionary()
_JOINS_KEPT = 16  # paths kept per client; others (a paged listing's queries) are resolved each time


def _joined(client: httpx.AsyncClient, path: str) -> httpx.URL:
    """`path` resolved against the client's base URL."""
    base = client.base_url
    kept = _JOINS.get(client)
    if kept is None or kept[0] is not base:
        kept = _JOINS[client] = (base, {})
    url = kept[1].get(path)
    if url is None:
        url = base.join(path.lstrip("/"))
        if len(kept[1]) < _JOINS_KEPT:
            kept[1][path] = url
    return url


def classify(exc: httpx.HTTPError, url: httpx.URL) -> ProbeFailure:
    """The readiness reason of a transport error, with a message that holds no secret."""
    place = where(url)
    refused = _cause(exc, EgressRefused)
    if refused is not None:
        return ProbeFailure(Reason.provider_unreachable, f"refused to connect: {refused}")
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
    return _cause(exc, kind) is not None


_E = TypeVar("_E", bound=BaseException)


def _cause(exc: BaseException, kind: type[_E]) -> _E | None:
    """The first exception of `kind` in `exc`'s chain of causes, or None."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, kind):
            return seen
        if isinstance(seen, ExceptionGroup):
            for inner in seen.exceptions:
                found = _cause(inner, kind)
                if found is not None:
                    return found
            return None
        seen = seen.__cause__ or seen.__context__
    return None


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
