"""Discovering third-party provider types through the `reconciler.providers` entry points."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from reconciler.core.registry import (
    BUILTIN_TYPES,
    ENTRY_POINT_GROUP,
    ProviderRegistry,
    ProviderType,
)
from reconciler.errors import ReconcilerError

log = logging.getLogger(__name__)


class PluginError(ReconcilerError):
    """An installed provider plugin is broken."""


def load_registry() -> ProviderRegistry:
    """The built-in provider types plus every installed plugin's.

    A plugin that fails to import, exposes something other than a `ProviderType`, or reuses a
    taken name is an error naming the plugin: silently skipping it would make its providers
    look like typos.
    """
    types = list(BUILTIN_TYPES)
    taken = {t.name for t in types}
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        where = f"{entry.name} = {entry.value}"
        try:
            loaded = entry.load()
        except Exception as exc:
            raise PluginError(
                f"provider plugin {where!r} failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(loaded, ProviderType):
            raise PluginError(f"provider plugin {where!r} is not a reconciler ProviderType")
        if loaded.name in taken:
            raise PluginError(f"provider plugin {where!r} reuses the type name {loaded.name!r}")
        taken.add(loaded.name)
        types.append(loaded)
        log.debug("provider type %s from plugin %s", loaded.name, where)
    return ProviderRegistry(types)
