"""The driver of a provider type: everything reconciler does with a provider goes through it.

    ProviderDriver   what a provider type implements, built in or shipped by a plugin
    ProbeContext     what a free probe is given
    bearer, capped   helpers: the usual `Authorization: Bearer`, the default output-token cap
    CallRequest      what a structured-output call is given; `HttpCall` what the driver makes of it
    Reading          the answer's text and token usage, read from the server's document

A driver decides *what* is sent and how answers read; it never sends anything itself. Every
request goes through `http.request` on the client the caller made with `http.make_client` (the
egress seam, bounded answers, deadlines), so a plugin's driver is held to the same policy as a
built-in one. The remedies it names are pure text, used by the readiness verdicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from reconciler.core.spec import ProviderSpec

if TYPE_CHECKING:  # validating files loads neither httpx nor the readiness and scoring models
    import httpx

    from reconciler.adapters.providers.failure import CallFailure
    from reconciler.adapters.providers.observation import Observation
    from reconciler.core.readiness import Reason, RemedyContext

__all__ = [
    "DRIVER_METHODS",
    "CallRequest",
    "HttpCall",
    "ProbeContext",
    "ProviderDriver",
    "Reading",
    "bearer",
    "capped",
]


@dataclass(frozen=True, slots=True)
class ProbeContext:
    """A probe's client (egress-guarded), headers, and the models the routes ask of it.

    `memory` lives as long as the prober keeps the provider and is emptied after a failure: a
    driver may keep there what cannot change between rounds.
    """

    client: httpx.AsyncClient
    spec: ProviderSpec
    headers: Mapping[str, str]
    models: frozenset[str]
    memory: dict[str, object]


@dataclass(frozen=True, slots=True)
class CallRequest:
    """One structured-output call: the conversation, the answer's schema, the route's params."""

    spec: ProviderSpec
    base_url: str
    model: str
    messages: list[dict[str, str]]
    schema: dict[str, Any]
    params: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class HttpCall:
    """The request a driver builds: a path under base_url and a JSON body."""

    path: str
    body: dict[str, Any]
    method: str = "POST"


@dataclass(frozen=True, slots=True)
class Reading:
    """The answer as JSON text (validated by the caller) and the tokens it cost, where known."""

    content: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


DRIVER_METHODS = ("auth_headers", "probe", "build_call", "read_answer", "classify", "remedy")


@runtime_checkable
class ProviderDriver(Protocol):
    """How one provider type is reached, probed, called, read and remedied."""

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        """Headers every request carries: the key (read at the last moment), a version..."""
        ...

    async def probe(self, context: ProbeContext) -> Observation:
        """What the server has, at no cost (never inference); raises `http.ProbeFailure`."""
        ...

    def build_call(self, call: CallRequest) -> HttpCall:
        """The request asking for JSON matching `call.schema`, its output tokens capped."""
        ...

    def read_answer(self, document: Any) -> Reading:
        """The answer in a 2xx document; raises a transient `CallFailure` when it has none."""
        ...

    def classify(self, status: int, body: bytes, retry_after: str | None) -> CallFailure | None:
        """The failure a status means (transient or not, Retry-After), or None for success."""
        ...

    def remedy(self, reason: Reason, context: RemedyContext) -> str | None:
        """A remedy in this type's own words (pure), or None for the generic one."""
        ...


def bearer(api_key: str | None) -> dict[str, str]:
    """`Authorization: Bearer KEY`, the way most servers take a key."""
    return {"Authorization": f"Bearer {api_key}"} if api_key is not None else {}


def capped(params: Mapping[str, Any], *names: str) -> dict[str, Any]:
    """The route's params with `names[0]` set to the default output cap unless one is given."""
    from reconciler.core.scoring import DEFAULT_MAX_OUTPUT_TOKENS  # only calls need the cap

    if any(name in params for name in names):
        return dict(params)
    return {names[0]: DEFAULT_MAX_OUTPUT_TOKENS, **params}
