"""A fake model server for tests and benchmarks: real HTTP/1.1 on 127.0.0.1, one port per provider.

It speaks the subsets of Ollama's, the OpenAI-compatible and Anthropic's APIs that reconciler
uses, with their real error shapes, and the tiny API of the test plugin's `acme` type. It
misbehaves on request: slow answers, a one-byte-per-second trickle, a socket that never answers,
a 10 MB body, bodies that are not JSON, 401, 5xx, 503 `Loading model`, 529 `overloaded_error`.
It runs its own event loop in a background thread, so synchronous tests and code that calls
`asyncio.run` can both talk to it. Behaviour is read at request time: a test may change it.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

OLLAMA = "ollama"
OPENAI = "openai"
ANTHROPIC = "anthropic"
ACME = "acme"  # tests/plugin_pkg's type: GET deployments/D/models, POST deployments/D/generate
ANTHROPIC_VERSION = "2023-06-01"
INFERENCE_PATHS = frozenset(
    {"/api/chat", "/api/generate", "/api/embed", "/v1/chat/completions", "/v1/messages"}
)
_ACME_GENERATE = re.compile(r"/v1/deployments/[^/]+/generate")
_REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 500: "Internal Server Error"}
_REASONS |= {503: "Service Unavailable", 429: "Too Many Requests", 302: "Found"}
_REASONS |= {400: "Bad Request", 529: "Overloaded"}


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


@dataclass
class Request:
    provider: str
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)  # when the request was read
    query: dict[str, str] = field(default_factory=dict)


class FakeServer:
    """Fake providers, each on its own port, served from one background event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.behaviours: dict[str, Behaviour] = {}
        self.requests: list[Request] = []
        self.connections: dict[str, int] = {}  # connections accepted, by provider
        self._never = asyncio.Event()  # what hanging requests wait for
        self._servers: dict[str, asyncio.Server] = {}
        self._ports: dict[str, int] = {}
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def add(self, name: str, behaviour: Behaviour | None = None, **fields: Any) -> str:
        """Start a fake provider; returns its base URL (with `/v1` for OpenAI-compatible)."""
        behaviour = behaviour or Behaviour(**fields)
        self.behaviours[name] = behaviour
        server = self._call(asyncio.start_server(self._handler(name), "127.0.0.1", 0, backlog=512))
        self._servers[name] = server
        self._ports[name] = server.sockets[0].getsockname()[1]
        return self.base_url(name)

    def base_url(self, name: str) -> str:
        root = f"http://127.0.0.1:{self._ports[name]}"
        return root + "/v1" if self.behaviours[name].kind in (OPENAI, ACME) else root

    def paths(self, name: str) -> list[str]:
        return [r.path for r in self.requests if r.provider == name]

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers.values():
                server.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        self._call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    def _handler(self, name: str) -> Callable[..., Any]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections[name] = self.connections.get(name, 0) + 1
            with suppress(ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
                while await self._one(name, reader, writer):
                    pass
            writer.close()

        return handle

    async def _one(
        self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        line = await reader.readline()
        if not line:
            return False
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers = {}
        while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
            key, _, value = header.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        body = json.loads(raw) if raw else None
        path, _, query = target.partition("?")
        request = Request(name, method, path, headers, body, query=dict(parse_qsl(query)))
        self.requests.append(request)
        behaviour = self.behaviours[name]
        if behaviour.hang:
            # Held by the server: a task waiting on an event nothing else holds could be
            # collected once its client hangs up, and its socket reported as unclosed.
            await self._never.wait()
        if behaviour.delay_s:
            await asyncio.sleep(behaviour.delay_s)
        if behaviour.chat_delay_s and path in INFERENCE_PATHS:
            await asyncio.sleep(behaviour.chat_delay_s)
        status, payload, extra = self._answer(behaviour, request)
        await self._send(writer, behaviour, status, payload, extra)
        return True

    def _answer(self, b: Behaviour, request: Request) -> tuple[int, Any, dict[str, str]]:
        method, path, headers, body = request.method, request.path, request.headers, request.body
        if b.raw is not None:
            return b.raw
        if b.redirect_to is not None:
            return 302, {"error": "moved"}, {"location": b.redirect_to}
        if b.status is not None:
            return b.status, {"error": f"fake status {b.status}"}, {}
        if b.api_key is not None and not _authorized(b, headers):
            return 401, _auth_error(b), {}
        if b.kind == ANTHROPIC and headers.get("anthropic-version") != ANTHROPIC_VERSION:
            return 400, anthropic_error("invalid_request_error", "anthropic-version: required"), {}
        if b.overloaded:
            return 529, anthropic_error("overloaded_error", "Overloaded"), {}
        if b.loading:
            error = {"code": 503, "message": "Loading model", "type": "unavailable_error"}
            return 503, {"error": error}, {}
        if path in INFERENCE_PATHS or _ACME_GENERATE.fullmatch(path):
            if b.chat is None:
                return 404, {"error": "no chat configured in this fake"}, {}
            status, answer, *extra = b.chat(b, path, body)
            return status, answer, (extra[0] if extra else {})
        if b.kind == OLLAMA:
            return (*_ollama(b, method, path, body), {})
        if b.kind == ACME:
            return (*_acme(b, path), {})
        if b.kind == ANTHROPIC:
            return (*_anthropic_models(b, path, request.query), {})
        return (*_openai(b, path), {})

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        b: Behaviour,
        status: int,
        payload: Any,
        extra: dict[str, str],
    ) -> None:
        if isinstance(payload, bytes):  # sent as it is, whatever it claims to be
            data = payload
        elif b.huge:
            data = b'{"models": [' + b" " * (10 * 1024 * 1024) + b"]}"
        elif b.not_json:
            data = b"<html>this is not the API you are looking for</html>"
        else:
            data = json.dumps(payload).encode()
        if b.gzip:
            data = gzip.compress(data)
            extra = {**extra, "content-encoding": "gzip"}
        head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
        head += "content-type: application/json\r\n"
        head += f"content-length: {len(data)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in extra.items()) + "\r\n"
        writer.write(head.encode())
        if b.trickle:
            for byte in data:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1.0)
            return
        writer.write(data)
        await writer.drain()


def _authorized(b: Behaviour, headers: dict[str, str]) -> bool:
    if b.kind == ANTHROPIC:
        return headers.get("x-api-key") == b.api_key
    return headers.get("authorization") == f"Bearer {b.api_key}"


def anthropic_error(kind: str, message: str) -> dict[str, Any]:
    """Anthropic's error document: `{"type": "error", "error": {"type": ..., "message": ...}}`."""
    return {"type": "error", "error": {"type": kind, "message": message}}


def _anthropic_models(b: Behaviour, path: str, query: dict[str, str]) -> tuple[int, Any]:
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


def _acme(b: Behaviour, path: str) -> tuple[int, Any]:
    if re.fullmatch(r"/v1/deployments/[^/]+/models", path):
        return 200, {"models": [m.name for m in b.models]}
    return 404, {"error": {"code": "not_found", "message": f"no such path: {path}"}}


def _auth_error(b: Behaviour) -> Any:
    if b.kind == OLLAMA:
        return {"error": "unauthorized"}
    if b.kind == ANTHROPIC:
        return anthropic_error("authentication_error", "invalid x-api-key")
    return {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}


def _ollama(b: Behaviour, method: str, path: str, body: Any) -> tuple[int, Any]:
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


def _openai(b: Behaviour, path: str) -> tuple[int, Any]:
    if path == "/v1/models":
        data = [{"id": m.name, "object": "model", "owned_by": "fake"} for m in b.models]
        return 200, {"object": "list", "data": data}
    if path == "/health":
        return 200, {"status": "ok"}
    return 404, {"error": {"message": f"Unknown request URL: {path}", "type": "not_found"}}


@contextmanager
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer()
    try:
        yield server
    finally:
        server.close()


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


def serve(argv: list[str]) -> None:
    """`python -m tests.fakeprovider KIND COUNT HANGING [CHAT_DELAY_S]`: fake providers in their
    own process.

    Prints the base URLs as one JSON line, then serves until stdin closes. Benchmarks use it so
    that the server does not share the measured process's interpreter lock. With CHAT_DELAY_S,
    every provider answers chat requests with a score after that many seconds.
    """
    kind, count, hanging = argv[0], int(argv[1]), int(argv[2])
    chat = {"chat": answering(), "delay_s": float(argv[3])} if len(argv) > 3 else {}
    server = FakeServer()
    models = [FakeModel("llama3.1:8b", loaded=True)]
    urls = [
        server.add(f"p{i}", kind=kind, models=models, hang=i < hanging, **chat)
        for i in range(count)
    ]
    print(json.dumps(urls), flush=True)
    sys.stdin.read()
    os._exit(0)  # connections may still be open; the process is done with all of them


if __name__ == "__main__":
    serve(sys.argv[1:])
