"""Files -> desired state: parse, validate, merge and cross-check the config files.

Purely computational: the caller reads the files and hands in `(display name, bytes)` pairs.
Each file is parsed and validated on its own and the result is cached by content hash, so a
long-running caller re-parses only the files that changed. After a load without problems, the
next one cross-checks only the routes of the files that changed, as long as the set of declared
provider names is the same: every other route was checked against those very names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

from reconciler.core.config_file import validate_file
from reconciler.core.desired import (
    DeclaredProvider,
    DeclaredRoute,
    DesiredState,
    FileResult,
    Source,
    dumped,
)
from reconciler.core.diagnostics import problem_at
from reconciler.core.registry import ProviderRegistry
from reconciler.core.yamldoc import YamlDocument, parse_document
from reconciler.errors import ConfigInvalid, Problem

if TYPE_CHECKING:  # a load without an unknown name makes no suggestion
    from reconciler.core.suggest import Suggester

__all__ = [
    "ConfigLoader",
    "DeclaredProvider",
    "DeclaredRoute",
    "DesiredState",
    "FileResult",
    "Source",
    "dumped",
    "validate_file",
]


class _Clean(NamedTuple):
    """A load that found no problem: its files and the provider names they declared."""

    files: frozenset[tuple[str, str]]
    names: frozenset[str]


class ConfigLoader:
    """Loads config files into a `DesiredState`, caching each file's result by content.

    The cache holds the files of the last load: an edit re-parses only the files it changed.
    """

    def __init__(self, registry: ProviderRegistry | None = None) -> None:
        self.registry = registry or ProviderRegistry()
        self.rules = self.registry.rules()
        self._cache: dict[tuple[str, str], FileResult] = {}
        self._clean: _Clean | None = None  # the last load, when it found no problem
        self.parsed_files = 0  # how many files were parsed, not served from the cache
        self.checked_routes = 0  # how many routes' references were checked, over all loads

    def load(
        self, files: Sequence[tuple[str, bytes]], env: Mapping[str, str] | None = None
    ) -> DesiredState:
        """Validate `files`, in the order given; raise `ConfigInvalid` with every problem.

        With `env`, every secret reference must name a variable present in it. Callers pause the
        collector around it (`reconciler.adapters.files.paused_gc`): it would only trace the fresh
        trees again and again (DESIGN section 8), and more often the more problems there are.
        """
        state, problems = self._checked(files, env)
        if problems:
            raise ConfigInvalid(problems)
        return state

    def _checked(
        self, files: Sequence[tuple[str, bytes]], env: Mapping[str, str] | None
    ) -> tuple[DesiredState, list[Problem]]:
        results = [self._file(name, data) for name, data in files]
        # Keep the files as they are now, nothing older: a daemon loads for months.
        self._cache = {(r.name, r.digest): r for r in results}
        problems = [p for result in results for p in result.problems]
        state, merge_problems = _merge(results, self.rules)
        problems += merge_problems
        sources = dict(files)
        declared = frozenset().union(*(result.provider_names for result in results))
        clean, self._clean = self._clean, None
        to_check: Iterable[DeclaredRoute] = state.routes.values()
        if clean is not None and not problems and declared == clean.names:
            # The other files' routes were checked against these very names, and passed.
            to_check = [
                route
                for result in results
                if (result.name, result.digest) not in clean.files
                for route in result.routes
            ]
        problems += self._cross_references(to_check, declared, sources)
        if env is not None:
            problems += _missing_env(state, env, sources)
        if not problems:
            self._clean = _Clean(frozenset(state.files), declared)
        return state, problems

    def _cross_references(
        self, routes: Iterable[DeclaredRoute], names: frozenset[str], sources: Mapping[str, bytes]
    ) -> list[Problem]:
        routes = list(routes)
        self.checked_routes += len(routes)
        return _cross_references(routes, names, sources)

    def _file(self, name: str, data: bytes) -> FileResult:
        digest = hashlib.sha256(data).hexdigest()
        key = (name, digest)
        cached = self._cache.get(key)
        if cached is None:
            self.parsed_files += 1
            cached = validate_file(name, data, digest, self.registry)
            self._cache[key] = cached
        return cached


def _merge(results: Sequence[FileResult], rules: str) -> tuple[DesiredState, list[Problem]]:
    providers: dict[str, DeclaredProvider] = {}
    routes: dict[str, DeclaredRoute] = {}
    problems: list[Problem] = []
    files = tuple((r.name, r.digest) for r in results)
    digest = hashlib.sha256("\n".join(f"{n}\0{d}" for n, d in files).encode()).hexdigest()
    for result in results:  # in C, by whole files; a name declared twice is looked for below
        providers.update(result.provider_map)
        routes.update(result.route_map)
    if len(providers) == sum(len(r.providers) for r in results) and len(routes) == sum(
        len(r.routes) for r in results
    ):
        by_name = {r.name: r for r in results}
        state = DesiredState(providers, routes, files, digest, file_results=by_name, rules=rules)
        return state, []
    providers, routes = {}, {}
    for result in results:
        for provider in result.providers:
            first = providers.setdefault(provider.name, provider)
            if first is not provider:
                problems.append(
                    _twice("provider", "providers", provider.name, provider.source, first.source)
                )
        for route in result.routes:
            first_route = routes.setdefault(route.task, route)
            if first_route is not route:
                problems.append(
                    _twice("route for task", "routes", route.task, route.source, first_route.source)
                )
    state = DesiredState(providers=providers, routes=routes, files=files, digest=digest)
    return state, problems


def _twice(kind: str, section: str, name: str, here: Source, first: Source) -> Problem:
    return Problem(
        file=here.file,
        line=here.line,
        column=here.column,
        path=f"{section}.{name}",
        code="duplicate_declaration",
        message=f"{kind} {name!r} is declared twice: here and at {first}",
        hint="keep one declaration; names are unique across all files",
    )


class _Documents:
    """Re-parses files on demand, only to locate a problem found after validation."""

    def __init__(self, sources: Mapping[str, bytes]) -> None:
        self._sources = sources
        self._docs: dict[str, YamlDocument] = {}

    def __getitem__(self, name: str) -> YamlDocument:
        if name not in self._docs:
            self._docs[name] = parse_document(name, self._sources[name])
        return self._docs[name]


def _cross_references(
    routes: Iterable[DeclaredRoute], names: frozenset[str], sources: Mapping[str, bytes]
) -> list[Problem]:
    docs = _Documents(sources)
    suggestion: Suggester | None = None  # made for the first unknown name
    problems = []
    for route in routes:
        targets: list[tuple[tuple[str | int, ...], str, str]] = [
            (("provider",), route.spec.provider, route.spec.model)
        ]
        targets += [
            (("fallbacks", i, "provider"), f.provider, f.model)
            for i, f in enumerate(route.spec.fallbacks)
        ]
        seen: set[tuple[str, str]] = set()
        for rel, provider, model in targets:
            path = ("routes", route.task, *rel)
            if provider not in names:
                if suggestion is None:
                    from reconciler.core.suggest import Suggester

                    suggestion = Suggester(names)
                problems.append(
                    problem_at(
                        docs[route.source.file],
                        path,
                        "unknown_provider",
                        f"provider {provider!r} is not declared",
                        suggestion(provider) or "declare it under `providers:`",
                    )
                )
            if (provider, model) in seen:
                problems.append(
                    problem_at(
                        docs[route.source.file],
                        path,
                        "repeated_fallback",
                        f"{provider}/{model} is already tried earlier in this route",
                        "remove the repeated fallback",
                    )
                )
            seen.add((provider, model))
    return problems


def _missing_env(
    state: DesiredState, env: Mapping[str, str], sources: Mapping[str, bytes]
) -> list[Problem]:
    docs = _Documents(sources)
    problems = []
    for provider in state.providers.values():
        endpoint = provider.spec.endpoint
        places: list[tuple[tuple[str, ...], str]] = []
        if endpoint.api_key is not None:
            places.append((("api_key",), endpoint.api_key.env))
        places += [
            (("headers", header), value.env)
            for header, value in endpoint.headers.items()
            if not isinstance(value, str)
        ]
        for rel, variable in places:
            if variable in env:
                continue
            problems.append(
                problem_at(
                    docs[provider.source.file],
                    ("providers", provider.name, "endpoint", *rel, "env"),
                    "secret_missing",
                    f"environment variable {variable} is not set",
                    f"export {variable} before running, or drop --check-env",
                )
            )
    return problems
