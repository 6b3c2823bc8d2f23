"""Discovering third-party provider types through the `reconciler.providers` entry points."""

from __future__ import annotations

import logging
import typing
from importlib.metadata import EntryPoint, entry_points

from reconciler.adapters.providers.builtin import BUILTIN_TYPES
from reconciler.core.registry import ENTRY_POINT_GROUP, ProviderRegistry, ProviderType
from reconciler.core.spec import ProviderSpec
from reconciler.errors import ReconcilerError

log = logging.getLogger(__name__)


class PluginError(ReconcilerError):
    """An installed provider plugin is broken."""


def load_registry() -> ProviderRegistry:
    """The built-in provider types plus every installed plugin's, each with its driver.

    A plugin that fails to import, exposes something other than a `ProviderType` of a
    `ProviderSpec` model, reuses a taken name or has no driver is an error naming the plugin:
    silently skipping it would make its providers look like typos, or fail only when called.
    """
    types = list(BUILTIN_TYPES)
    origins: dict[str, str] = {}
    taken = {t.name for t in types}
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        where = _describe(entry)
        fix = f"; fix or uninstall {entry.dist.name}" if entry.dist else ""
        try:
            loaded = entry.load()
        except Exception as exc:
            raise PluginError(
                f"provider plugin {where} failed to import: {type(exc).__name__}: {exc}{fix}"
            ) from exc
        if not isinstance(loaded, ProviderType):
            raise PluginError(f"provider plugin {where} is not a reconciler ProviderType{fix}")
        if reason := _model_problem(loaded):
            raise PluginError(f"provider plugin {where}: {reason}{fix}")
        if loaded.name in taken:
            raise PluginError(f"provider plugin {where} reuses the type name {loaded.name!r}{fix}")
        if reason := _driver_problem(loaded):
            raise PluginError(f"provider plugin {where}: {reason}{fix}")
        taken.add(loaded.name)
        types.append(loaded)
        origins[loaded.name] = _describe(entry)
        log.debug("provider type %s from plugin %s", loaded.name, where)
    return ProviderRegistry(types, origins)


def _describe(entry: EntryPoint) -> str:
    """`'acme = acme_provider:PROVIDER_TYPE' (acme-provider 1.0)`."""
    package = f" ({entry.dist.name} {entry.dist.version})" if entry.dist else ""
    return f"'{entry.name} = {entry.value}'{package}"


def _model_problem(provider_type: ProviderType) -> str | None:
    """Why `provider_type.config_model` can't validate `type: NAME` providers, if it can't."""
    model = provider_type.config_model
    if not (isinstance(model, type) and issubclass(model, ProviderSpec)):
        return f"config_model {model!r} is not a subclass of reconciler's ProviderSpec"
    field = model.model_fields.get("type")
    if field is None or typing.get_args(field.annotation) != (provider_type.name,):
        return f"config_model {model.__name__} must declare type: Literal[{provider_type.name!r}]"
    return None


def _driver_problem(provider_type: ProviderType) -> str | None:
    """Why `provider_type.driver` cannot probe and call `type: NAME` providers, if it can't."""
    from reconciler.adapters.providers.driver import DRIVER_METHODS, ProviderDriver  # plugins only

    driver = provider_type.driver
    if driver is None:
        return (
            f"type {provider_type.name!r} has no driver; pass one as ProviderType(..., driver=...)"
        )
    if not isinstance(driver, ProviderDriver):
        missing = [name for name in DRIVER_METHODS if not callable(getattr(driver, name, None))]
        return f"the driver of type {provider_type.name!r} lacks {', '.join(missing)}"
    return None
