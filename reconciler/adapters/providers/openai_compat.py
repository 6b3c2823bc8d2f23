"""The OpenAI-compatible driver: vLLM, llama.cpp, LM Studio, OpenAI, OpenRouter.

Its probe is `GET {base_url}/models`, and the server's health path if set: free metadata reads.
Its call is `/chat/completions` with `response_format` (a strict JSON schema) and `max_tokens`
unless the route's params give it (or `max_completion_tokens`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

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
from reconciler.core.readiness import Reason, RemedyContext
from reconciler.core.spec import OpenAICompatibleProvider


def versioned(base_url: str) -> bool:
    """True when a base URL ends in an API version (`/v1`)."""
    last = urlsplit(base_url).path.rstrip("/").rsplit("/", 1)[-1]
    return len(last) > 1 and last[0] == "v" and last[1:].isdigit()


def models_path(base_url: str) -> str:
    """`models` under a base URL that ends in a version (`/v1`), else `v1/models`."""
    return "models" if versioned(base_url) else "v1/models"


async def probe_openai_compatible(
    client: httpx.AsyncClient,
    headers: Mapping[str, str],
    health_path: str | None,
) -> Observation:
    """The models the server lists; first its health endpoint when it has one."""
    if health_path is not None:
        origin = client.base_url.copy_with(path=health_path, query=None)
        answer = await request(client, "GET", str(origin), headers)
        if answer.status == 503 and b"loading" in answer.body.lower():
            raise ProbeFailure(Reason.loading, f"{health_path} answered 503: loading model")
        check_status(answer, health_path)
    path = models_path(str(client.base_url))
    answer = await request(client, "GET", path, headers)
    check_status(answer, f"/{path}")
    body = answer.json(f"/{path}")
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise ProbeFailure(Reason.bad_response, f"/{path} has no `data` list")
    ids = {
        provider_text(entry["id"])
        for entry in data
        if isinstance(entry, dict) and isinstance(entry.get("id"), str)
    }
    return Observation(models=frozenset(ids))


class OpenAICompatibleDriver:
    """`type: openai_compatible`."""

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        return bearer(api_key)

    async def probe(self, context: ProbeContext) -> Observation:
        spec = context.spec
        health = spec.health_path if isinstance(spec, OpenAICompatibleProvider) else None
        return await probe_openai_compatible(context.client, context.headers, health)

    def build_call(self, call: CallRequest) -> HttpCall:
        path = "chat/completions" if versioned(call.base_url) else "v1/chat/completions"
        body = {
            **capped(call.params, "max_tokens", "max_completion_tokens"),
            "model": call.model,
            "messages": call.messages,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": call.schema, "strict": True},
            },
        }
        return HttpCall(path, body)

    def read_answer(self, document: Any) -> Reading:
        content = dig(document, "choices", 0, "message", "content")
        if not isinstance(content, str):
            raise CallFailure("the answer has no message content", transient=True)
        usage = dig(document, "usage")
        return Reading(
            content,
            token_count(dig(usage, "prompt_tokens")),
            token_count(dig(usage, "completion_tokens")),
        )

    def classify(self, status: int, body: bytes, retry_after: str | None) -> CallFailure | None:
        return http_failure(status, body, retry_after)

    def remedy(self, reason: Reason, context: RemedyContext) -> str | None:
        if reason is Reason.bad_response and context.base_url:
            return (
                f"check that {context.base_url} speaks OpenAI's API (GET /models lists the "
                f"models) and that its path, often /v1, is right"
            )
        return None
