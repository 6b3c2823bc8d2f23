"""The Ollama driver; its probe reads `/api/version`, `/api/tags`, `/api/show`, `/api/ps`.

Each is a metadata read that costs the server nothing: no model is loaded or kept loaded. A
prober that probes the same server every cycle remembers what cannot change without a new model
digest or a restart: the capabilities of a model digest, and the version (re-read every
VERSION_EVERY rounds). A steady cycle is then two small reads, /api/tags and /api/ps, one after
the other on one connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from reconciler.adapters.providers.driver import (
    CallRequest,
    HttpCall,
    ProbeContext,
    Reading,
    bearer,
    capped,
)
from reconciler.adapters.providers.failure import CallFailure, dig, http_failure, token_count
from reconciler.adapters.providers.http import (
    ProbeFailure,
    check_status,
    provider_text,
    request,
)
from reconciler.adapters.providers.observation import Observation
from reconciler.core.readiness import Reason, RemedyContext, model_matches
from reconciler.core.spec import OllamaProvider

VERSION_EVERY = 10


@dataclass
class OllamaMemory:
    """What earlier probes of one server learned and can be reused."""

    version: str | None = None
    rounds: int = 0
    # (model name, digest) -> capabilities; empty when the server does not report them.
    capabilities: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)


async def probe_ollama(
    client: httpx.AsyncClient,
    wanted: set[str],
    headers: Mapping[str, str],
    memory: OllamaMemory | None = None,
) -> Observation:
    """What an Ollama server has: its version, models, their capabilities, what is loaded."""
    memory = memory or OllamaMemory()
    fresh_version = memory.version is None or memory.rounds % VERSION_EVERY == 0
    # One read after the other, on one kept connection: a round trip more per read than sending
    # them at once, but one socket per provider instead of three, and a third of the pool's work
    # per request; at a thousand providers that work is most of a round. A server that is not
    # Ollama fails the version read, first.
    version = await _version(client, headers) if fresh_version else memory.version
    digests = await _tags(client, headers)
    loaded = await _loaded(client, headers)
    memory.version, memory.rounds = version, memory.rounds + 1
    capabilities: dict[str, frozenset[str]] = {}
    for model in sorted(wanted):
        found = model_matches(model, digests)
        if found is None:
            continue
        key = (found, digests[found])
        reported = memory.capabilities.get(key)
        if reported is None:
            reported = await _capabilities(client, headers, found)
            if reported is None:
                del digests[found]  # listed a moment ago, gone now
                continue
            memory.capabilities[key] = reported
        if reported:
            capabilities[found] = reported
    return Observation(version, frozenset(digests), capabilities, loaded)


async def _version(client: httpx.AsyncClient, headers: Mapping[str, str]) -> str | None:
    answer = await request(client, "GET", "api/version", headers)
    check_status(answer, "/api/version")
    body = answer.json("/api/version")
    version = body.get("version") if isinstance(body, dict) else None
    if not isinstance(version, str):
        raise ProbeFailure(Reason.bad_response, "/api/version has no version: not Ollama?")
    return provider_text(version, limit=64)


async def _tags(client: httpx.AsyncClient, headers: Mapping[str, str]) -> dict[str, str]:
    answer = await request(client, "GET", "api/tags", headers)
    check_status(answer, "/api/tags")
    return _models(answer.json("/api/tags"), "/api/tags")


async def _loaded(client: httpx.AsyncClient, headers: Mapping[str, str]) -> frozenset[str] | None:
    answer = await request(client, "GET", "api/ps", headers)
    if answer.status == 404:
        return None  # an Ollama older than /api/ps
    check_status(answer, "/api/ps")
    return frozenset(_models(answer.json("/api/ps"), "/api/ps"))


def _models(body: Any, what: str) -> dict[str, str]:
    """Model name -> digest ('' when not given), under both `name` and `model` keys."""
    models = body.get("models") if isinstance(body, dict) else None
    if not isinstance(models, list):
        raise ProbeFailure(Reason.bad_response, f"{what} has no `models` list")
    found: dict[str, str] = {}
    for entry in models:
        if isinstance(entry, dict):
            digest = entry.get("digest")
            for key in ("name", "model"):
                if isinstance(name := entry.get(key), str):
                    found[provider_text(name)] = digest if isinstance(digest, str) else ""
    return found


async def _capabilities(
    client: httpx.AsyncClient, headers: Mapping[str, str], model: str
) -> frozenset[str] | None:
    """The model's capabilities; empty when the server does not report them; None if gone."""
    answer = await request(client, "POST", "api/show", headers, json_body={"model": model})
    if answer.status == 404:
        return None
    check_status(answer, "/api/show")
    body = answer.json("/api/show")
    reported = body.get("capabilities") if isinstance(body, dict) else None
    if not isinstance(reported, list):
        return frozenset()
    return frozenset(provider_text(c, limit=64) for c in reported if isinstance(c, str))


class OllamaDriver:
    """`type: ollama`: `/api/chat` with `format` (the schema) and `options.num_predict`."""

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        return bearer(api_key)

    async def probe(self, context: ProbeContext) -> Observation:
        memory = context.memory.get("ollama")
        if not isinstance(memory, OllamaMemory):
            memory = context.memory["ollama"] = OllamaMemory()
        return await probe_ollama(context.client, set(context.models), context.headers, memory)

    def build_call(self, call: CallRequest) -> HttpCall:
        body: dict[str, Any] = {
            "model": call.model,
            "messages": call.messages,
            "stream": False,
            "format": call.schema,
            "options": capped(call.params, "num_predict"),
        }
        if isinstance(call.spec, OllamaProvider):
            body["keep_alive"] = keep_alive_value(call.spec.keep_alive)
        return HttpCall("api/chat", body)

    def read_answer(self, document: Any) -> Reading:
        content = dig(document, "message", "content")
        if not isinstance(content, str):
            raise CallFailure("the answer has no message content", transient=True)
        return Reading(
            content,
            token_count(dig(document, "prompt_eval_count")),
            token_count(dig(document, "eval_count")),
        )

    def classify(self, status: int, body: bytes, retry_after: str | None) -> CallFailure | None:
        return http_failure(status, body, retry_after)

    def remedy(self, reason: Reason, context: RemedyContext) -> str | None:
        name, model, task = context.provider, context.model, context.task
        if reason is Reason.model_missing:
            return f"ollama pull {model} on {name}, or fix routes.{task}.model"
        if reason is Reason.bad_response and context.base_url:
            return f"check that {context.base_url} is an Ollama server (`ollama serve`)"
        return None


def keep_alive_value(keep_alive: str) -> str | int:
    """`keep_alive` as Ollama reads it: a duration as text, but "keep loaded" as the number -1,
    since Ollama parses text with Go's `time.ParseDuration`, which refuses "-1" (no unit)."""
    return -1 if keep_alive == "-1" else keep_alive
