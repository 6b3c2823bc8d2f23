"""Files -> desired state: parse, validate, merge and cross-check the config files.

Purely computational: the caller reads the files and hands in `(display name, bytes)` pairs.
Each file is parsed and validated on its own and the result is cached by content hash, so a
long-running caller re-parses only the files that changed. Merging and cross-references are
checked over the whole set every time (they are cheap).
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from yaml.nodes import MappingNode, ScalarNode

from reconciler.core.diagnostics import control_problems, problem_at, validation_problems
from reconciler.core.registry import ProviderRegistry
from reconciler.core.spec import NAME_HINT, FileHeader, Name, ProviderSpec, RouteSpec
from reconciler.core.suggest import Suggester, suggest
from reconciler.core.yamldoc import YamlDocument, YamlProblems, parse_document
from reconciler.errors import ConfigInvalid, Problem

_NAMES = TypeAdapter(Name)
_SECTIONS = ("providers", "routes")


@dataclass(frozen=True, slots=True)
class Source:
    """Where a declaration came from."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


def dumped(spec: BaseModel, memo: dict[str, Any]) -> dict[str, Any]:
    """`spec` as JSON data, kept in `memo`: the loader reuses objects of unchanged files."""
    if "dump" not in memo:
        memo["dump"] = spec.model_dump(mode="json")
    dump: dict[str, Any] = memo["dump"]
    return dump


@dataclass(frozen=True, slots=True)
class DeclaredProvider:
    name: str
    spec: ProviderSpec
    source: Source
    # Values derived from the spec, computed once (see `dumped`).
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class DeclaredRoute:
    task: str
    spec: RouteSpec
    source: Source
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class FileResult:
    """One file, parsed and validated on its own."""

    name: str
    digest: str
    providers: tuple[DeclaredProvider, ...]
    routes: tuple[DeclaredRoute, ...]
    problems: tuple[Problem, ...]
    provider_names: frozenset[str] = frozenset()  # every name declared, valid spec or not


@dataclass(frozen=True, slots=True)
class DesiredState:
    """Everything the files declare, merged and cross-checked."""

    providers: Mapping[str, DeclaredProvider]
    routes: Mapping[str, DeclaredRoute]
    files: tuple[tuple[str, str], ...]  # (name, sha256) in load order
    digest: str = field(default="")

    def secret_env_names(self) -> set[str]:
        """Names of every environment variable a secret reference points at."""
        return {
            ref.env
            for declared in self.providers.values()
            for ref in declared.spec.endpoint.secret_refs()
        }


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic collector: building large trees of fresh objects triggers it uselessly."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class ConfigLoader:
    """Loads config files into a `DesiredState`, caching each file's result by content.

    The cache holds the files of the last load: an edit re-parses only the files it changed.
    """

    def __init__(self, registry: ProviderRegistry | None = None) -> None:
        self.registry = registry or ProviderRegistry()
        self._cache: dict[tuple[str, str], FileResult] = {}
        self.parsed_files = 0  # how many files were parsed, not served from the cache

    def load(
        self, files: Sequence[tuple[str, bytes]], env: Mapping[str, str] | None = None
    ) -> DesiredState:
        """Validate `files`, in the order given; raise `ConfigInvalid` with every problem.

        With `env`, every secret reference must name a variable present in it. The collector is
        paused throughout: it would only trace the fresh trees again and again (DESIGN section 8),
        and more often the more problems there are to report.
        """
        with paused_gc():
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
        state, merge_problems = _merge(results)
        problems += merge_problems
        sources = dict(files)
        declared = {n for result in results for n in result.provider_names}
        problems += _cross_references(state, declared, sources)
        if env is not None:
            problems += _missing_env(state, env, sources)
        return state, problems

    def _file(self, name: str, data: bytes) -> FileResult:
        digest = hashlib.sha256(data).hexdigest()
        key = (name, digest)
        cached = self._cache.get(key)
        if cached is None:
            self.parsed_files += 1
            cached = validate_file(name, data, digest, self.registry)
            self._cache[key] = cached
        return cached


def validate_file(name: str, data: bytes, digest: str, registry: ProviderRegistry) -> FileResult:
    """Parse and validate one file on its own (no cross-file checks)."""
    try:
        doc = parse_document(name, data)
    except YamlProblems as exc:
        return FileResult(name, digest, (), (), tuple(exc.problems))
    if not isinstance(doc.value, dict):
        problem = problem_at(
            doc,
            (),
            "not_a_mapping",
            "the top level of a config file must be a mapping",
            "start the file with `version: 1`, then `providers:` and/or `routes:`",
        )
        return FileResult(name, digest, (), (), (problem,))
    problems: list[Problem] = []
    raw_providers, raw_routes, known_version = _sections(doc, problems)
    names = frozenset(raw_providers)
    if not known_version:
        return FileResult(name, digest, (), (), tuple(problems), names)
    providers = _providers(doc, raw_providers, registry, problems)
    routes = _routes(doc, raw_routes, problems)
    if doc.controls:
        problems = _one_per_place(problems, control_problems(doc))
    return FileResult(name, digest, tuple(providers), tuple(routes), tuple(problems), names)


def _one_per_place(problems: list[Problem], controls: list[Problem]) -> list[Problem]:
    """A control character is the cause of what else its string fails (a name pattern, a URL).

    Where it is, it is the one problem reported; unless the string is a literal credential,
    which is the graver mistake and stays the one reported.
    """
    secret = {(p.line, p.column) for p in problems if p.code == "secret_literal"}
    controls = [c for c in controls if (c.line, c.column) not in secret]
    taken = {(c.line, c.column) for c in controls}
    return [p for p in problems if (p.line, p.column) not in taken] + controls


def _sections(
    doc: YamlDocument, problems: list[Problem]
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """The `providers` and `routes` mappings of a file whose top level is a mapping.

    A problem in the header (an unknown top-level key, a section that is not a mapping) does not
    stop the other sections from being checked: every problem is reported in one run. A wrong
    `version` does: the rest of the file is in a format this code does not know. Either way the
    provider names are kept, so routes elsewhere that name them are not reported as well.
    """
    try:
        header = FileHeader.model_validate(doc.value)
    except ValidationError as exc:
        problems.extend(validation_problems(doc, (), exc, FileHeader))
        providers, routes = (
            value if isinstance(value := doc.value.get(section), dict) else {}
            for section in _SECTIONS
        )
        errors = exc.errors(include_url=False, include_input=False)
        known_version = all(error["loc"][:1] != ("version",) for error in errors)
        return providers, routes, known_version
    return header.providers, header.routes, True


def _providers(
    doc: YamlDocument, raw: dict[str, Any], registry: ProviderRegistry, problems: list[Problem]
) -> list[DeclaredProvider]:
    marks = _entry_marks(doc, "providers")
    declared = []
    for name, body in raw.items():
        path = ("providers", name)
        if not _valid_name(doc, path, "provider", problems):
            continue
        model = _provider_model(doc, path, body, registry, problems)
        if model is None:
            continue
        try:
            spec = model.model_validate(body)
        except ValidationError as exc:
            problems.extend(validation_problems(doc, path, exc, model))
            continue
        declared.append(DeclaredProvider(name, spec, marks[name]))
    return declared


def _provider_model(
    doc: YamlDocument,
    path: tuple[str, str],
    body: Any,
    registry: ProviderRegistry,
    problems: list[Problem],
) -> type[ProviderSpec] | None:
    types = registry.names()
    if not isinstance(body, dict):
        problems.append(
            problem_at(
                doc,
                path,
                "model_type",
                "a provider must be a mapping with `type:` and `endpoint:`",
                f"for example `type: {types[0]}` and `endpoint: {{base_url: http://...}}`",
            )
        )
        return None
    type_name = body.get("type")
    if type_name is None:
        problems.append(
            problem_at(
                doc,
                (*path, "type"),
                "missing_field",
                "missing required field 'type'",
                "add `type:` with one of: " + ", ".join(types),
            )
        )
        return None
    provider_type = registry.get(type_name) if isinstance(type_name, str) else None
    if provider_type is None:
        problems.append(
            problem_at(
                doc,
                (*path, "type"),
                "unknown_type",
                f"unknown provider type {str(type_name)!r}",
                suggest(str(type_name), types) + " (registered: " + ", ".join(types) + ")",
            )
        )
        return None
    return provider_type.config_model


def _routes(doc: YamlDocument, raw: dict[str, Any], problems: list[Problem]) -> list[DeclaredRoute]:
    """Each route on its own, so one bad route hides neither the others nor their problems."""
    marks = _entry_marks(doc, "routes")
    declared = []
    for task, body in raw.items():
        path = ("routes", task)
        if not _valid_name(doc, path, "task", problems):
            continue
        if not isinstance(body, dict):
            problems.append(
                problem_at(
                    doc,
                    path,
                    "model_type",
                    "a route must be a mapping with `provider:` and `model:`",
                    "for example `provider: local-ollama` and `model: llama3.1:8b`",
                )
            )
            continue
        try:
            spec = RouteSpec.model_validate(body)
        except ValidationError as exc:
            problems.extend(validation_problems(doc, path, exc, RouteSpec))
            continue
        declared.append(DeclaredRoute(task, spec, marks[task]))
    return declared


def _valid_name(doc: YamlDocument, path: tuple[str, str], kind: str, out: list[Problem]) -> bool:
    try:
        _NAMES.validate_python(path[1])
    except ValidationError:
        out.append(
            problem_at(
                doc,
                path,
                "invalid_name",
                f"invalid {kind} name {path[1]!r}",
                NAME_HINT,
                at_key=True,
            )
        )
        return False
    return True


def _entry_marks(doc: YamlDocument, section: str) -> dict[str, Source]:
    """The place of each entry's key under a top-level section, from the node tree."""
    assert isinstance(doc.root, MappingNode)
    for key, value in doc.root.value:
        if isinstance(key, ScalarNode) and key.value == section and isinstance(value, MappingNode):
            return {
                k.value: Source(doc.name, k.start_mark.line + 1, k.start_mark.column + 1)
                for k, _ in value.value
            }
    return {}


def _merge(results: Sequence[FileResult]) -> tuple[DesiredState, list[Problem]]:
    providers: dict[str, DeclaredProvider] = {}
    routes: dict[str, DeclaredRoute] = {}
    problems: list[Problem] = []
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
    files = tuple((r.name, r.digest) for r in results)
    digest = hashlib.sha256("\n".join(f"{n}\0{d}" for n, d in files).encode()).hexdigest()
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
    state: DesiredState, names: set[str], sources: Mapping[str, bytes]
) -> list[Problem]:
    docs = _Documents(sources)
    suggestion = Suggester(names)
    problems = []
    for route in state.routes.values():
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
