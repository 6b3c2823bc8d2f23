"""A fake model server for tests and benchmarks: real HTTP/1.1 on 127.0.0.1, one port per provider.

It speaks the subsets of Ollama's, the OpenAI-compatible and Anthropic's APIs that reconciler
uses, with their real error shapes, and the tiny API of the test plugin's `acme` type. It
misbehaves on request: slow answers, a one-byte-per-second trickle, a socket that never answers,
a 10 MB body, bodies that are not JSON, 401, 5xx, 503 `Loading model`, 529 `overloaded_error`.
It runs its own event loop in a background thread, so synchronous tests and code that calls
`asyncio.run` can both talk to it. Behaviour is read at request time: a test may change it.

This module holds the server (`FakeServer`, `fake_server`, and `python -m tests.fakeprovider`);
what each API answers is in tests/fake_apis.py, the chat handlers in tests/fake_chat.py, and all
of it may be imported from here.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from tests.fake_apis import (
    ACME,
    ANTHROPIC,
    ANTHROPIC_VERSION,
    INFERENCE_PATHS,
    OLLAMA,
    OPENAI,
    Behaviour,
    ChatHandler,
    FakeModel,
    answer_acme,
    answer_anthropic_models,
    answer_ollama,
    answer_openai,
    anthropic_error,
    auth_error,
    authorized,
)
from tests.fake_chat import Calls, answering, failing, item_of, ollama_not_found, rate_limited_once

# What tests import from here, wherever it is defined.
__all__ = [
    "ACME",
    "ANTHROPIC",
    "ANTHROPIC_VERSION",
    "INFERENCE_PATHS",
    "OLLAMA",
    "OPENAI",
    "Behaviour",
    "Calls",
    "ChatHandler",
    "FakeModel",
    "FakeServer",
    "Request",
    "answering",
    "anthropic_error",
    "failing",
    "fake_server",
    "item_of",
    "ollama_not_found",
    "rate_limited_once",
    "serve",
]

_ACME_GENERATE = re.compile(r"/v1/deployments/[^/]+/generate")
_REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 500: "Internal Server Error"}
_REASONS |= {503: "Service Unavailable", 429: "Too Many Requests", 302: "Found"}
_REASONS |= {400: "Bad Request", 529: "Overloaded"}


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
        if b.api_key is not None and not authorized(b, headers):
            return 401, auth_error(b), {}
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
            return (*answer_ollama(b, method, path, body), {})
        if b.kind == ACME:
            return (*answer_acme(b, path), {})
        if b.kind == ANTHROPIC:
            return (*answer_anthropic_models(b, path, request.query), {})
        return (*answer_openai(b, path), {})

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


@contextmanager
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer()
    try:
        yield server
    finally:
        server.close()


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
