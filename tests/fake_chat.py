"""Chat handlers for the fake providers: how a fake answers inference requests
(`Behaviour.chat`). `answering` scores in each provider's own shape, `failing` and
`rate_limited_once` misbehave, `Calls` counts; `ollama_not_found` and `item_of` help write more.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from tests.fake_apis import ACME, ANTHROPIC, OLLAMA, Behaviour, ChatHandler, anthropic_error


def answering(
    score: float = 0.8, rationale: str = "clear and accurate", content: str | None = None
) -> Callable[[Behaviour, str, Any], tuple[int, Any]]:
    """A chat handler answering every request with a score, in the provider's own shape."""

    def chat(b: Behaviour, path: str, body: Any) -> tuple[int, Any]:
        model = (body or {}).get("model", "")
        if model not in {m.name for m in b.models}:
            if b.kind == OLLAMA:
                return 404, ollama_not_found(model)
            if b.kind == ANTHROPIC:
                return 404, anthropic_error("not_found_error", f"model: {model}")
            error = {"message": f"The model `{model}` does not exist", "type": "invalid_request"}
            return 404, {"error": error}
        text = (
            content if content is not None else json.dumps({"score": score, "rationale": rationale})
        )
        if b.kind == ANTHROPIC:
            return 200, _anthropic_message(model, text)
        if b.kind == ACME:
            return 200, {"output": text, "usage": {"in": 42, "out": 9}}
        if b.kind == OLLAMA:
            message = {"role": "assistant", "content": text}
            return 200, {
                "model": model,
                "message": message,
                "done": True,
                "prompt_eval_count": 42,
                "eval_count": 9,
            }
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
        }
        usage = {"prompt_tokens": 42, "completion_tokens": 9, "total_tokens": 51}
        return 200, {
            "object": "chat.completion",
            "model": model,
            "choices": [choice],
            "usage": usage,
        }

    return chat


def _anthropic_message(model: str, text: str) -> dict[str, Any]:
    """A Messages API answer: the `answer` tool's input when `text` is a JSON object, else text."""
    try:
        given = json.loads(text)
    except ValueError:
        given = None
    block: dict[str, Any] = {"type": "text", "text": text}
    if isinstance(given, dict):
        block = {"type": "tool_use", "id": "toolu_01", "name": "answer", "input": given}
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [block],
        "stop_reason": "tool_use" if block["type"] == "tool_use" else "end_turn",
        "usage": {"input_tokens": 42, "output_tokens": 9},
    }


def ollama_not_found(model: str) -> dict[str, str]:
    """Ollama's answer to a chat with a model it has not pulled."""
    return {"error": f"model '{model}' not found, try pulling it first"}


def item_of(body: Any) -> str:
    """The item a chat request is about: the content of its last message."""
    messages = (body or {}).get("messages") or [{}]
    return str(messages[-1].get("content", ""))


def failing(status: int, error: Any = None, headers: dict[str, str] | None = None) -> ChatHandler:
    """A chat handler answering every request with `status` (and `headers`)."""

    def chat(b: Behaviour, path: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        return status, error or {"error": f"fake status {status}"}, dict(headers or {})

    return chat


def rate_limited_once(retry_after: str, then: ChatHandler) -> ChatHandler:
    """429 with `Retry-After` on the first request about each item; `then` answers the rest."""
    seen: set[str] = set()

    def chat(b: Behaviour, path: str, body: Any) -> tuple[Any, ...]:
        item = item_of(body)
        if item not in seen:
            seen.add(item)
            return 429, {"error": "rate limited"}, {"retry-after": retry_after}
        return then(b, path, body)

    return chat


class Calls:
    """A chat handler that counts the requests about each item, then lets `then` answer."""

    def __init__(self, then: ChatHandler) -> None:
        self.then = then
        self.per_item: Counter[str] = Counter()

    def __call__(self, b: Behaviour, path: str, body: Any) -> tuple[Any, ...]:
        self.per_item[item_of(body)] += 1
        return self.then(b, path, body)
