"""Asking a task's route for one answer: the one code path of the scoring worker and `try`.

The primary is asked first, then the fallbacks in order, each for a structured answer (through
its provider type's driver: Ollama `format`, OpenAI `response_format`, Anthropic a forced tool)
checked against the route's output schema. An answer that is
not JSON matching the schema is asked again once, in the same attempt, with the rejected answer
and what was wrong with it; only then does that target count as failed. At most
`max_concurrency` calls run per provider, each capped in output tokens (see `chat`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from reconciler.adapters import secrets
from reconciler.adapters.db import queue_store as queue
from reconciler.adapters.providers.builtin import builtin_driver
from reconciler.adapters.providers.chat import CallFailure, ChatAnswer, chat
from reconciler.adapters.providers.driver import ProviderDriver
from reconciler.adapters.providers.http import MissingSecret, resolve_headers
from reconciler.adapters.providers.shards import ShardedClient
from reconciler.core.registry import ProviderRegistry
from reconciler.core.scoring import (
    DEFAULT_OUTPUT_SCHEMA,
    MalformedAnswer,
    Target,
    messages_for,
    parse_answer,
    reask_messages,
    route_targets,
    system_prompt,
)
from reconciler.core.spec import ProviderSpec
from reconciler.core.text import untrusted
from reconciler.errors import StateError
from reconciler.service import readiness

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RouteSnapshot:
    """The routes and provider specs as the database has them at one generation."""

    generation: int
    routes: Mapping[str, dict[str, Any]]
    specs: Mapping[str, ProviderSpec]
    # Each provider's driver; a built-in type's is found without.
    drivers: Mapping[str, ProviderDriver] = field(default_factory=dict)

    def driver(self, provider: str, spec: ProviderSpec) -> ProviderDriver:
        found = self.drivers.get(provider) or builtin_driver(spec.type)
        if found is None:
            detail = f"provider type {spec.type!r} has no driver in this installation"
            raise CallFailure(detail, transient=False)
        return found


def load_snapshot(engine: Engine, registry: ProviderRegistry) -> RouteSnapshot:
    inputs = readiness.inputs_from_database(engine, registry)
    with engine.connect() as conn:
        routes = queue.route_rows(conn)
    return RouteSnapshot(inputs.generation, routes, inputs.specs, inputs.drivers)


@dataclass(frozen=True, slots=True)
class Answered:
    """A valid answer, who gave it, and what it cost (a re-ask included)."""

    result: dict[str, Any]
    provider: str
    model: str
    latency_ms: float
    prompt_tokens: int | None
    completion_tokens: int | None


class RouteFailure(Exception):
    """No target of the route gave a valid answer; `failures` says why, target by target."""

    def __init__(self, failures: Sequence[tuple[Target, CallFailure]]) -> None:
        self.failures = tuple(failures)
        self.lines = tuple(f"{t.provider}/{t.model}: {f.detail}" for t, f in self.failures)
        super().__init__("; ".join(self.lines))
        self.transient = any(f.transient for _, f in self.failures)
        waits = [f.retry_after_s for _, f in self.failures if f.retry_after_s is not None]
        self.retry_after_s = max(waits) if waits else None


class Asker:
    """Asks a route's models for structured answers: one client and one limit per provider."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = env
        # Per provider, the client and the limit of the newest config generation seen: jobs
        # claimed before an apply may still be in flight with an older snapshot.
        self._clients: dict[str, tuple[int, ProviderSpec, ShardedClient]] = {}
        self._limits: dict[str, ProviderLimit] = {}

    async def ask(
        self, snapshot: RouteSnapshot, task: str, route: Mapping[str, Any], payload: dict[str, Any]
    ) -> Answered:
        """The first valid answer of the route's primary and fallbacks; else `RouteFailure`."""
        schema = route["output_schema"] or DEFAULT_OUTPUT_SCHEMA
        messages = messages_for(payload, system_prompt(task, route["prompt"]))
        failures: list[tuple[Target, CallFailure]] = []
        for target in route_targets(route):
            try:
                return await self._ask_safely(snapshot, target, messages, schema)
            except CallFailure as failure:
                failures.append((target, failure))
        raise RouteFailure(failures)

    async def _ask_safely(
        self,
        snapshot: RouteSnapshot,
        target: Target,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
    ) -> Answered:
        """`_ask`, with any unforeseen error made a transient failure of this target.

        So a provider that breaks this code in a way nobody foresaw costs one attempt at that
        target, with a true message, and the fallbacks are still tried.
        """
        try:
            return await self._ask(snapshot, target, messages, schema)
        except CallFailure:
            raise
        except Exception as exc:
            where = f"{target.provider}/{target.model}"
            log.debug("call to %s failed unexpectedly", where, exc_info=True)
            detail = untrusted(str(exc), secrets.known(), limit=200)
            raise CallFailure(f"unexpected {type(exc).__name__}: {detail}", True) from None

    async def _ask(
        self,
        snapshot: RouteSnapshot,
        target: Target,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
    ) -> Answered:
        spec = snapshot.specs.get(target.provider)
        if spec is None or not spec.enabled:
            raise CallFailure("provider missing or disabled", transient=True)
        driver = snapshot.driver(target.provider, spec)
        env = os.environ if self.env is None else self.env
        try:
            headers = resolve_headers(spec.endpoint, env, driver.auth_headers)
        except MissingSecret as exc:
            raise CallFailure(exc.detail, transient=True) from None
        generation = snapshot.generation
        async with (
            self._limit(target.provider, spec, generation).held(),
            self._client(target.provider, spec, generation).lease() as client,
        ):

            async def call(sent: list[dict[str, str]]) -> ChatAnswer:
                return await chat(
                    client, spec, driver, target.model, sent, schema, target.params, headers
                )

            result, answer = await _valid_answer(call, messages, schema)
        return Answered(
            result,
            target.provider,
            target.model,
            answer.latency_ms,
            answer.prompt_tokens,
            answer.completion_tokens,
        )

    def _limit(self, provider: str, spec: ProviderSpec, generation: int) -> ProviderLimit:
        """One limit per provider, sized by the newest generation's `max_concurrency`: calls of
        older and newer snapshots count against the same limit."""
        limit = self._limits.get(provider)
        if limit is None:
            limit = self._limits[provider] = ProviderLimit(spec.max_concurrency, generation)
        elif generation >= limit.generation:
            limit.resize(spec.max_concurrency, generation)
        return limit

    def _client(self, provider: str, spec: ProviderSpec, generation: int) -> ShardedClient:
        """The client of the newest spec seen; an older snapshot's call never brings an older
        client back. A replaced client is closed once its calls in flight are done."""
        held = self._clients.get(provider)
        if held is not None and (held[1] == spec or held[0] > generation):
            return held[2]
        if held is not None:
            held[2].retire()
        client = ShardedClient(spec.endpoint, max_connections=spec.max_concurrency)
        self._clients[provider] = (generation, spec, client)
        return client

    async def close(self) -> None:
        for _, _, client in self._clients.values():
            await client.aclose()
        self._clients.clear()


class ProviderLimit:
    """At most `size` calls at once to one provider; the size follows the newest config."""

    def __init__(self, size: int, generation: int) -> None:
        self.size = size
        self.generation = generation
        self.in_flight = 0
        self._changed = asyncio.Condition()

    def resize(self, size: int, generation: int) -> None:
        """A new size: a larger one lets the waiting calls in as the next call ends."""
        self.size, self.generation = size, generation

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.size)
            self.in_flight += 1
        try:
            yield
        finally:
            async with self._changed:
                self.in_flight -= 1
                self._changed.notify(max(1, self.size - self.in_flight))


async def _valid_answer(
    call: Callable[[list[dict[str, str]]], Awaitable[ChatAnswer]],
    messages: list[dict[str, str]],
    schema: dict[str, Any],
) -> tuple[dict[str, Any], ChatAnswer]:
    """Ask; an answer that is not JSON matching `schema` is asked again once, saying why."""
    first = await call(messages)
    try:
        return parse_answer(first.content, schema), first
    except MalformedAnswer as exc:
        again = reask_messages(messages, first.content, str(exc))
    second = await call(again)
    try:
        return parse_answer(second.content, schema), first.then(second)
    except MalformedAnswer as exc:
        raise CallFailure(f"{exc} (also when asked again)", transient=True) from None


def ask_once(
    engine: Engine,
    registry: ProviderRegistry,
    task: str,
    payload: dict[str, Any],
    env: Mapping[str, str] | None = None,
) -> Answered:
    """One item through the task's route as the database has it now; nothing is stored.

    Raises `StateError` when the task has no enabled route, `RouteFailure` when no target answered.
    """
    snapshot = load_snapshot(engine, registry)
    route = snapshot.routes.get(task)
    if route is None:
        raise StateError(f"task {task} has no route; add one under `routes:` and apply")
    if not route["enabled"]:
        raise StateError(f"the route of task {task} is disabled; enable it and apply")

    async def ask() -> Answered:
        asker = Asker(env)
        try:
            return await asker.ask(snapshot, task, route, payload)
        finally:
            await asker.close()

    return asyncio.run(ask())
