"""Asking a model for a structured answer: Ollama `/api/chat`, OpenAI `/chat/completions`.

    CallFailure(detail, transient, retry_after_s)

Transient: connection errors, timeouts, 5xx, 429 (with the server's Retry-After, at most
MAX_RETRY_AFTER_S) and answers that are not what was asked for; the caller tries the next fallback
and retries later. Any other 4xx is permanent for that target (a model that is not there, a
request the server rejects). Whatever the server said is quoted only after every known secret
value is cut out of it and its control characters are escaped.

Every call caps the tokens the model may write: DEFAULT_MAX_OUTPUT_TOKENS unless the route's
`params` give Ollama's `num_predict` or OpenAI's `max_tokens` (or `max_completion_tokens`).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from reconciler.adapters import secrets
from reconciler.adapters.providers.http import ProbeFailure, request
from reconciler.core.scoring import DEFAULT_MAX_OUTPUT_TOKENS, MAX_RETRY_AFTER_S
from reconciler.core.spec import OllamaProvider, OpenAICompatibleProvider, ProviderSpec
from reconciler.core.text import decode_untrusted

MAX_ANSWER_BYTES = 8 * 1024 * 1024
MAX_TOKENS = 2**31 - 1  # a token count past this is not a count
_SECONDS = re.compile(r"[0-9]{1,12}")


class CallFailure(Exception):
    def __init__(self, detail: str, transient: bool, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.transient = transient
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class ChatAnswer:
    content: str
    latency_ms: float
    prompt_tokens: int | None
    completion_tokens: int | None

    def then(self, later: ChatAnswer) -> ChatAnswer:
        """`later`'s content, at the cost of both calls (time and the tokens known)."""
        return ChatAnswer(
            later.content,
            self.latency_ms + later.latency_ms,
            _sum(self.prompt_tokens, later.prompt_tokens),
            _sum(self.completion_tokens, later.completion_tokens),
        )


def _sum(first: int | None, second: int | None) -> int | None:
    if first is None or second is None:
        return second if first is None else first
    return min(first + second, MAX_TOKENS)


async def chat(
    client: httpx.AsyncClient,
    spec: ProviderSpec,
    model: str,
    messages: list[dict[str, str]],
    schema: dict[str, Any],
    params: Mapping[str, Any],
    headers: Mapping[str, str],
) -> ChatAnswer:
    """One structured-output request, bounded by the endpoint's `timeout_s`."""
    started = time.perf_counter()
    if isinstance(spec, OllamaProvider):
        path = "api/chat"
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "stream": False,
            "format": schema,
            "options": {"num_predict": DEFAULT_MAX_OUTPUT_TOKENS, **params},
            "keep_alive": spec.keep_alive,
        }
    elif isinstance(spec, OpenAICompatibleProvider):
        path = "chat/completions" if _versioned(str(client.base_url)) else "v1/chat/completions"
        body = {
            **_openai_cap(params),
            "model": model,
            "messages": messages,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": True},
            },
        }
    else:
        raise CallFailure(f"provider type {spec.type!r} cannot be called here", transient=False)
    try:
        async with asyncio.timeout(spec.endpoint.timeout_s):
            answer = await request(
                client, "POST", path, headers, json_body=body, max_bytes=MAX_ANSWER_BYTES
            )
    except TimeoutError:
        raise CallFailure(f"no answer within {spec.endpoint.timeout_s:g}s", True) from None
    except ProbeFailure as exc:
        raise CallFailure(exc.detail, transient=True) from None
    _check(answer.status, answer.body, answer.retry_after)
    try:
        document = answer.json(f"/{path}", lenient_ints=True)
    except ProbeFailure as exc:
        raise CallFailure(exc.detail, transient=True) from None
    latency = (time.perf_counter() - started) * 1000
    if isinstance(spec, OllamaProvider):
        return _ollama_answer(document, latency)
    return _openai_answer(document, latency)


def _openai_cap(params: Mapping[str, Any]) -> dict[str, Any]:
    """The route's request fields, with the default output cap unless they set one."""
    if "max_tokens" in params or "max_completion_tokens" in params:
        return dict(params)
    return {"max_tokens": DEFAULT_MAX_OUTPUT_TOKENS, **params}


def _versioned(base_url: str) -> bool:
    last = base_url.rstrip("/").rsplit("/", 1)[-1]
    return len(last) > 1 and last[0] == "v" and last[1:].isdigit()


def _check(status: int, body: bytes, retry_after: str | None) -> None:
    if 200 <= status < 300:
        return
    said = _error_text(body)
    if status == 429:
        raise CallFailure(f"rate limited (429){said}", True, parse_retry_after(retry_after))
    if status >= 500:
        raise CallFailure(f"server error {status}{said}", True, parse_retry_after(retry_after))
    raise CallFailure(f"request refused ({status}){said}", transient=False)


def _error_text(body: bytes) -> str:
    text = decode_untrusted(body, secrets.known())
    return f": {text}" if text else ""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date), at most MAX_RETRY_AFTER_S.

    Anything else (`²`, a negative number, a date that does not parse) is no advice at all.
    """
    if not value:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(0.0, moment.timestamp() - time.time()), MAX_RETRY_AFTER_S)


def _ollama_answer(document: Any, latency: float) -> ChatAnswer:
    message = document.get("message") if isinstance(document, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise CallFailure("the answer has no message content", transient=True)
    return ChatAnswer(
        content, latency, _int(document.get("prompt_eval_count")), _int(document.get("eval_count"))
    )


def _openai_answer(document: Any, latency: float) -> ChatAnswer:
    choices = document.get("choices") if isinstance(document, dict) else None
    first = choices[0] if isinstance(choices, list) and choices else None
    message = first.get("message") if isinstance(first, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise CallFailure("the answer has no message content", transient=True)
    usage = document.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    return ChatAnswer(
        content, latency, _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
    )


def _int(value: Any) -> int | None:
    """A token count, or None for anything that cannot be one."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS:
        return value
    return None
