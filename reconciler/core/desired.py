"""The desired state the config files declare: each provider and route with its source, and the
whole set. Plain frozen data; `config` builds it, `plan` compares it with the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from reconciler.core.spec import ProviderSpec, RouteSpec
from reconciler.errors import Problem


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
    # By name, for merging whole files at once (a name declared twice keeps its last).
    provider_map: dict[str, DeclaredProvider] = field(init=False, repr=False, compare=False)
    route_map: dict[str, DeclaredRoute] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "provider_map", {p.name: p for p in self.providers})
        object.__setattr__(self, "route_map", {r.task: r for r in self.routes})


@dataclass(frozen=True, slots=True)
class DesiredState:
    """Everything the files declare, merged and cross-checked."""

    providers: Mapping[str, DeclaredProvider]
    routes: Mapping[str, DeclaredRoute]
    files: tuple[tuple[str, str], ...]  # (name, sha256) in load order
    digest: str = field(default="")
    # Each file's own result, by name, when the loader made the state: what a file declares,
    # looked up without going through every item.
    file_results: Mapping[str, FileResult] = field(default_factory=dict, compare=False, repr=False)
    # The rules the loader validated with (`ProviderRegistry.rules`); "" when no loader made it.
    rules: str = field(default="", compare=False, repr=False)

    def secret_env_names(self) -> set[str]:
        """Names of every environment variable a secret reference points at."""
        return {
            ref.env
            for declared in self.providers.values()
            for ref in declared.spec.endpoint.secret_refs()
        }
