"""The Anthropic driver: the Messages API, with the key sent as `x-api-key`.

Its probe is the model list, `GET /v1/models` (paged by `has_more`/`last_id`, at most MAX_PAGES
pages), and `GET /v1/models/{id}` for a wanted name the list does not hold (an alias): free
reads, never inference. Its call is `POST /v1/messages` with `max_tokens` (required; the default
cap unless the route's params set it), the system prompt in the top-level `system` field, and the
answer forced through a tool whose input schema is the route's output schema: the `tool_use`
block's `input` is the answer. 429 and 529 (`overloaded_error`) are transient.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

from reconciler.adapters.providers.driver import (
    CallRequest,
    HttpCall,
    ProbeContext,
    Reading,
    capped,
)
from reconciler.adapters.providers.failure import CallFailure, dig, http_failure, token_count
from reconciler.adapters.providers.http import (
    Answer,
    ProbeFailure,
    check_status,
    provider_text,
    request,
)
from reconciler.adapters.providers.observation import Observation
from reconciler.core.readiness import Reason, RemedyContext

API_VERSION = "2023-06-01"
PAGE_SIZE = 1000
MAX_PAGES = 20
TOOL = "answer"
TOOL_DESCRIPTION = "Give the answer. Its input is the whole answer, matching the schema."


class AnthropicDriver:
    """`type: anthropic`."""

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if api_key is not None:
            headers["x-api-key"] = api_key
        return headers

    async def probe(self, context: ProbeContext) -> Observation:
        listed = await _listed(context)
        for model in sorted(context.models - listed):
            if await _known(context, model):
                listed.add(model)
        return Observation(models=frozenset(listed))

    def build_call(self, call: CallRequest) -> HttpCall:
        system = "\n\n".join(m["content"] for m in call.messages if m.get("role") == "system")
        body: dict[str, Any] = {
            **capped(call.params, "max_tokens"),
            "model": call.model,
            "messages": [m for m in call.messages if m.get("role") != "system"],
            "tools": [{"name": TOOL, "description": TOOL_DESCRIPTION, "input_schema": call.schema}],
            "tool_choice": {"type": "tool", "name": TOOL},
        }
        if system:
            body["system"] = system
        return HttpCall("v1/messages", body)

    def read_answer(self, document: Any) -> Reading:
        blocks = dig(document, "content")
        blocks = [b for b in blocks if isinstance(b, dict)] if isinstance(blocks, list) else []
        used = [b.get("input") for b in blocks if b.get("type") == "tool_use"]
        texts = [
            b["text"] for b in blocks if b.get("type") == "text" and isinstance(b.get("text"), str)
        ]
        if used and isinstance(used[0], dict):
            content = json.dumps(used[0], ensure_ascii=False)
        elif texts:  # not the tool: the caller asks again, saying why
            content = "".join(texts)
        else:
            raise CallFailure("the answer has no tool_use block", transient=True)
        usage = dig(document, "usage")
        return Reading(
            content,
            token_count(dig(usage, "input_tokens")),
            token_count(dig(usage, "output_tokens")),
        )

    def classify(self, status: int, body: bytes, retry_after: str | None) -> CallFailure | None:
        return http_failure(status, body, retry_after)

    def remedy(self, reason: Reason, context: RemedyContext) -> str | None:
        name, task, model = context.provider, context.task, context.model
        match reason:
            case Reason.model_missing:
                return (
                    f"use a model {name} lists (GET /v1/models) instead of {model}, "
                    f"or fix routes.{task}.model"
                )
            case Reason.auth_failed if not context.secret_envs:
                return f"set providers.{name}.endpoint.api_key to {{env: ANTHROPIC_API_KEY}}"
            case Reason.auth_failed:
                envs = " or ".join(context.secret_envs)
                return f"check the key in {envs}: Anthropic refused it"
            case Reason.server_error:
                return f"wait: {name} is overloaded or failing; readiness checks again"
            case Reason.bad_response if context.base_url:
                return f"check that {context.base_url} is Anthropic's API, without /v1"
            case _:
                return None


async def _listed(context: ProbeContext) -> set[str]:
    """The model ids the list holds, page after page until every wanted one is seen."""
    found: set[str] = set()
    after: str | None = None
    for _ in range(MAX_PAGES):
        query = {"limit": PAGE_SIZE} | ({"after_id": after} if after else {})
        answer = await request(
            context.client, "GET", f"v1/models?{urlencode(query)}", context.headers
        )
        body = _checked(answer, "/v1/models")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise ProbeFailure(Reason.bad_response, "/v1/models has no `data` list")
        found |= {
            provider_text(entry["id"])
            for entry in data
            if isinstance(entry, dict) and isinstance(entry.get("id"), str)
        }
        last = body.get("last_id")
        if body.get("has_more") is not True or not isinstance(last, str) or context.models <= found:
            return found
        after = last
    return found


async def _known(context: ProbeContext, model: str) -> bool:
    """True when `GET /v1/models/{model}` knows the name (an alias the list does not show)."""
    path = f"v1/models/{quote(model, safe='')}"
    answer = await request(context.client, "GET", path, context.headers)
    if answer.status == 404:
        return False
    _checked(answer, "/v1/models/{id}")
    return True


def _checked(answer: Answer, what: str) -> Any:
    """The answer's JSON; a failed status raised with Anthropic's error type in the detail."""
    try:
        check_status(answer, what)
    except ProbeFailure as failure:
        kind = _error_type(answer.body)
        raise ProbeFailure(
            failure.reason, f"{failure.detail} ({kind})" if kind else failure.detail
        ) from None
    return answer.json(what)


def _error_type(body: bytes) -> str | None:
    """`overloaded_error` from `{"type": "error", "error": {"type": ...}}`, if the body says."""
    try:
        kind = dig(json.loads(body), "error", "type")
    except ValueError:
        return None
    return provider_text(kind, limit=64) if isinstance(kind, str) else None
