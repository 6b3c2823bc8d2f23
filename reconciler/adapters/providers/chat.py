"""Asking a model for a structured answer, through its provider type's driver.

The driver builds the request (its structured-output option and its output-token cap, by
default DEFAULT_MAX_OUTPUT_TOKENS unless the route's `params` set the type's own cap), classifies
a failed answer and reads a good one; this module sends it on the caller's client under the
endpoint's `timeout_s` and maps transport errors to transient `CallFailure`s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from reconciler.adapters.providers.driver import CallRequest, ProviderDriver
from reconciler.adapters.providers.failure import (
    MAX_TOKENS,
    CallFailure,
    parse_retry_after,
)
from reconciler.adapters.providers.http import ProbeFailure, request
from reconciler.core.spec import ProviderSpec

__all__ = ["MAX_ANSWER_BYTES", "CallFailure", "ChatAnswer", "chat", "parse_retry_after"]

MAX_ANSWER_BYTES = 8 * 1024 * 1024


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
    driver: ProviderDriver,
    model: str,
    messages: list[dict[str, str]],
    schema: dict[str, Any],
    params: Mapping[str, Any],
    headers: Mapping[str, str],
) -> ChatAnswer:
    """One structured-output request, bounded by the endpoint's `timeout_s`."""
    started = time.perf_counter()
    call = CallRequest(spec, str(client.base_url), model, messages, schema, params)
    built = driver.build_call(call)
    timeout = spec.endpoint.timeout_s
    try:
        async with asyncio.timeout(timeout):
            answer = await request(
                client,
                built.method,
                built.path,
                headers,
                json_body=built.body,
                max_bytes=MAX_ANSWER_BYTES,
            )
    except TimeoutError:
        raise CallFailure(f"no answer within {timeout:g}s", True) from None
    except ProbeFailure as exc:
        raise CallFailure(exc.detail, transient=True) from None
    failure = driver.classify(answer.status, answer.body, answer.retry_after)
    if failure is not None:
        raise failure
    try:
        document = answer.json(f"/{built.path}", lenient_ints=True)
    except ProbeFailure as exc:
        raise CallFailure(exc.detail, transient=True) from None
    reading = driver.read_answer(document)
    latency = (time.perf_counter() - started) * 1000
    return ChatAnswer(reading.content, latency, reading.prompt_tokens, reading.completion_tokens)
