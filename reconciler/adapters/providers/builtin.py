"""The built-in provider types, each with its driver, as plugins ship theirs.

A built-in driver's module (and httpx with it) is imported when the driver is first used, so
`validate` and `schema`, which load the registry, stay light.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from importlib import import_module
from typing import TYPE_CHECKING, Any, cast

from reconciler.core import registry
from reconciler.core.registry import ProviderType

if TYPE_CHECKING:  # validating files needs no driver's data classes
    from reconciler.adapters.providers.driver import (
        CallRequest,
        HttpCall,
        ProbeContext,
        ProviderDriver,
        Reading,
    )
    from reconciler.adapters.providers.failure import CallFailure
    from reconciler.adapters.providers.observation import Observation
    from reconciler.core.readiness import Reason, RemedyContext


class LazyDriver:
    """A driver named by `module:Class`, made on first use."""

    def __init__(self, where: str) -> None:
        self.where = where

    @functools.cached_property
    def driver(self) -> ProviderDriver:
        module, _, name = self.where.partition(":")
        return cast("ProviderDriver", getattr(import_module(module), name)())

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        return self.driver.auth_headers(api_key)

    async def probe(self, context: ProbeContext) -> Observation:
        return await self.driver.probe(context)

    def build_call(self, call: CallRequest) -> HttpCall:
        return self.driver.build_call(call)

    def read_answer(self, document: Any) -> Reading:
        return self.driver.read_answer(document)

    def classify(self, status: int, body: bytes, retry_after: str | None) -> CallFailure | None:
        return self.driver.classify(status, body, retry_after)

    def remedy(self, reason: Reason, context: RemedyContext) -> str | None:
        return self.driver.remedy(reason, context)


_PACKAGE = "reconciler.adapters.providers"
_DRIVERS: dict[str, ProviderDriver] = {
    "ollama": LazyDriver(f"{_PACKAGE}.ollama:OllamaDriver"),
    "openai_compatible": LazyDriver(f"{_PACKAGE}.openai_compat:OpenAICompatibleDriver"),
    "anthropic": LazyDriver(f"{_PACKAGE}.anthropic:AnthropicDriver"),
}
BUILTIN_TYPES: tuple[ProviderType, ...] = tuple(
    replace(provider_type, driver=_DRIVERS[provider_type.name])
    for provider_type in registry.BUILTIN_TYPES
)


def driver_of(provider_type: ProviderType | None) -> ProviderDriver | None:
    """The full driver of a registered type; None when it has none (a validation-only entry)."""
    from reconciler.adapters.providers.driver import ProviderDriver

    driver = provider_type.driver if provider_type is not None else None
    return driver if isinstance(driver, ProviderDriver) else None


def builtin_driver(type_name: str) -> ProviderDriver | None:
    """The driver of a built-in type, for callers given a spec without a registry."""
    return _DRIVERS.get(type_name)
