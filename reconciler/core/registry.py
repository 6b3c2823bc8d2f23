"""The provider registry: `type:` in a provider spec -> its typed config model.

Purely computational. Built-in types are listed here; the adapters discover third-party types
through the `reconciler.providers` entry-point group and pass them in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from reconciler.core.spec import OllamaProvider, OpenAICompatibleProvider, ProviderSpec

ENTRY_POINT_GROUP = "reconciler.providers"


@dataclass(frozen=True, slots=True)
class ProviderType:
    """One provider type. Third-party packages expose an instance as an entry point."""

    name: str
    config_model: type[ProviderSpec]
    summary: str = ""


BUILTIN_TYPES: tuple[ProviderType, ...] = (
    ProviderType("ollama", OllamaProvider, "An Ollama server."),
    ProviderType(
        "openai_compatible",
        OpenAICompatibleProvider,
        "A server speaking OpenAI's API (vLLM, llama.cpp, LM Studio, OpenAI, OpenRouter).",
    ),
)


class ProviderRegistry:
    """An immutable map of provider type names to `ProviderType`s."""

    def __init__(self, types: Iterable[ProviderType] = BUILTIN_TYPES) -> None:
        self._types: dict[str, ProviderType] = {}
        for provider_type in types:
            if provider_type.name in self._types:
                raise ValueError(f"provider type {provider_type.name!r} is registered twice")
            self._types[provider_type.name] = provider_type

    def get(self, name: str) -> ProviderType | None:
        return self._types.get(name)

    def names(self) -> list[str]:
        return sorted(self._types)

    def __iter__(self) -> Iterator[ProviderType]:
        return iter(self._types[name] for name in self.names())
