"""The provider registry: `type:` in a provider spec -> its typed config model and its driver.

Purely computational. The built-in types' config models are listed here; their drivers, and
third-party types found through the `reconciler.providers` entry-point group, are added by the
adapters. Core knows a driver only by its remedies, which are pure text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from reconciler import __version__
from reconciler.core.spec import (
    AnthropicProvider,
    OllamaProvider,
    OpenAICompatibleProvider,
    ProviderSpec,
)

if TYPE_CHECKING:  # loading config never needs the readiness model
    from reconciler.core.readiness import Reason, RemedyContext

ENTRY_POINT_GROUP = "reconciler.providers"


class TypeDriver(Protocol):
    """What core needs of a provider type's driver: the remedies it names (pure)."""

    def remedy(self, reason: Reason, context: RemedyContext) -> str | None:
        """A remedy in this type's own words, or None for the generic one."""
        ...


@dataclass(frozen=True, slots=True)
class ProviderType:
    """One provider type. Third-party packages expose an instance as an entry point.

    `driver` probes, calls and remedies providers of the type; a registry that only validates
    files may leave it out, but `reconciler.adapters.plugins.load_registry` refuses a type
    without one.
    """

    name: str
    config_model: type[ProviderSpec]
    summary: str = ""
    driver: TypeDriver | None = None


BUILTIN_TYPES: tuple[ProviderType, ...] = (
    ProviderType("ollama", OllamaProvider, "An Ollama server."),
    ProviderType(
        "openai_compatible",
        OpenAICompatibleProvider,
        "A server speaking OpenAI's API (vLLM, llama.cpp, LM Studio, OpenAI, OpenRouter).",
    ),
    ProviderType("anthropic", AnthropicProvider, "Anthropic's Messages API."),
)


class ProviderRegistry:
    """An immutable map of provider type names to `ProviderType`s.

    `origins` says where a plugin's type came from (its distribution and version); the built-in
    types come with this version of reconciler.
    """

    def __init__(
        self,
        types: Iterable[ProviderType] = BUILTIN_TYPES,
        origins: Mapping[str, str] | None = None,
    ) -> None:
        self._types: dict[str, ProviderType] = {}
        for provider_type in types:
            if provider_type.name in self._types:
                raise ValueError(f"provider type {provider_type.name!r} is registered twice")
            self._types[provider_type.name] = provider_type
        self._origins = dict(origins or {})

    def rules(self) -> str:
        """What turns files into rows, as a digest: this version of reconciler and each type's
        model and origin. Files applied under other rules may plan differently (a new default)."""
        lines = [f"reconciler {__version__}"]
        for provider_type in self:
            model = provider_type.config_model
            origin = self._origins.get(provider_type.name, "built-in")
            lines.append(f"{provider_type.name} {model.__module__}.{model.__qualname__} {origin}")
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    def get(self, name: str) -> ProviderType | None:
        return self._types.get(name)

    def names(self) -> list[str]:
        return sorted(self._types)

    def __iter__(self) -> Iterator[ProviderType]:
        return iter(self._types[name] for name in self.names())
