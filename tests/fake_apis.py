"""What each fake API answers, as functions of a `Behaviour`: the subsets of Ollama's, the
OpenAI-compatible and Anthropic's APIs that reconciler uses, with their real error shapes, and the
tiny API of the test plugin's `acme` type. Served by tests/fakeprovider.py; inference requests are
answered by a `ChatHandler` (tests/fake_chat.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

OLLAMA = "ollama"
OPENAI = "openai"
ANTHROPIC = "anthropic"
ACME = "acme"  # tests/plugin_pkg's type: GET deployments/D/models, POST deployments/D/generate
ANTHROPIC_VERSION = "2023-06-01"
INFERENCE_PATHS = frozenset(
    {"/api/chat", "/api/generate", "/api/embed", "/v1/chat/completions", "/v1/messages"}
)


ChatHandler = Callable[["Behaviour", str, Any], tuple[Any, ...]]


@dataclass
class FakeModel:
    name: str
    capabilities: tuple[str, ...] = ("completion",)
    loaded: bool = False


@dataclass
class Behaviour:
    """How one fake provider answers. Every field may be changed while the server runs."""

    kind: str = OLLAMA
    models: list[FakeModel] = field(default_factory=list)
    version: str = "0.6.2"
    # when set, requests need `Authorization: Bearer <key>` (Anthropic: `x-api-key: <key>`)
    api_key: str | None = None
    status: int | None = None  # answer every request with this status
    loading: bool = False  # 503 `Loading model`, as llama.cpp answers while it loads
    delay_s: float = 0.0  # wait before answering
    chat_delay_s: float = 0.0  # wait before answering a model call only: probes stay fast
    trickle: bool = False  # send the body one byte per second
    hang: bool = False  # read the request, never answer
    huge: bool = False  # a 10 MB body
    not_json: bool = False  # a body that is not JSON
    gzip: bool = False  # compress bodies, as servers behind a CDN or nginx do
    report_capabilities: bool = True  # older Ollama servers do not report them
    has_ps: bool = True
    redirect_to: str | None = None
    overloaded: bool = False  # Anthropic's 529 `overloaded_error`
    page_size: int = 1000  # Anthropic's model list: at most this many models a page
    # (status, raw body, headers) sent as they are for every request: hostile bytes, encodings
    raw: tuple[int, bytes, dict[str, str]] | None = None
    # (behaviour, path, request body) -> (status, body) or (status, body, extra headers);
    # for inference endpoints
    chat: ChatHandler | None = None


def authorized(b: Behaviour, headers: dict[str, str]) -> bool:
    if b.kind == ANTHROPIC:
        return headers.get("x-api-key") == b.api_key
    return headers.get("authorization") == f"Bearer {b.api_key}"


def anthropic_error(kind: str, message: str) -> dict[str, Any]:
    """Anthropic's error document: `{"type": "error", "error": {"type": ..., "message": ...}}`."""
    return {"type": "error", "error": {"type": kind, "message": message}}


def answer_anthropic_models(b: Behaviour, path: str, query: dict[str, str]) -> tuple[int, Any]:
    """`GET /v1/models` a page at a time (`limit`, `after_id`), and `GET /v1/models/{id}`."""
    listed = [{"type": "model", "id": m.name, "display_name": m.name} for m in b.models]
    if not path.startswith("/v1/models"):
        return 404, anthropic_error("not_found_error", f"no such path: {path}")
    if path != "/v1/models":
        wanted = unquote(path.removeprefix("/v1/models/"))
        found = [entry for entry in listed if entry["id"] == wanted]
        if found:
            return 200, found[0]
        return 404, anthropic_error("not_found_error", f"model: {wanted}")
    ids = [entry["id"] for entry in listed]
    start = ids.index(query["after_id"]) + 1 if query.get("after_id") in ids else 0
    size = min(int(query.get("limit", "20")), b.page_size)
    page = listed[start : start + size]
    return 200, {
        "data": page,
        "has_more": start + size < len(listed),
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }


def answer_acme(b: Behaviour, path: str) -> tuple[int, Any]:
    if re.fullmatch(r"/v1/deployments/[^/]+/models", path):
        return 200, {"models": [m.name for m in b.models]}
    return 404, {"error": {"code": "not_found", "message": f"no such path: {path}"}}


def auth_error(b: Behaviour) -> Any:
    if b.kind == OLLAMA:
        return {"error": "unauthorized"}
    if b.kind == ANTHROPIC:
        return anthropic_error("authentication_error", "invalid x-api-key")
    return {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}


def answer_ollama(b: Behaviour, method: str, path: str, body: Any) -> tuple[int, Any]:
    if path == "/api/version":
        return 200, {"version": b.version}
    if path == "/api/tags":
        return 200, {"models": [_tag(m) for m in b.models]}
    if path == "/api/ps" and b.has_ps:
        return 200, {"models": [_tag(m) for m in b.models if m.loaded]}
    if path == "/api/show" and method == "POST":
        wanted = (body or {}).get("model", "")
        for model in b.models:
            if model.name == wanted:
                shown: dict[str, Any] = {"details": {"family": "llama"}, "model_info": {}}
                if b.report_capabilities:
                    shown["capabilities"] = list(model.capabilities)
                return 200, shown
        return 404, {"error": f"model '{wanted}' not found"}
    return 404, {"error": "404 page not found"}


def _tag(model: FakeModel) -> dict[str, Any]:
    return {"name": model.name, "model": model.name, "size": 4_920_753_328, "digest": "0" * 64}


def answer_openai(b: Behaviour, path: str) -> tuple[int, Any]:
    if path == "/v1/models":
        data = [{"id": m.name, "object": "model", "owned_by": "fake"} for m in b.models]
        return 200, {"object": "list", "data": data}
    if path == "/health":
        return 200, {"status": "ok"}
    return 404, {"error": {"message": f"Unknown request URL: {path}", "type": "not_found"}}
