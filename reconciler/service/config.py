"""The config files as a use case: check them, load them, describe their format.

No database: `validate` and `schema` stay light, and the provider types installed (built-in
and plugins) are found here for every command that reads a spec.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from reconciler.adapters.plugins import load_registry
from reconciler.core.registry import ProviderRegistry
from reconciler.errors import ConfigInvalid, Problem

if TYPE_CHECKING:  # `schema` needs neither the file reader nor the loader
    from reconciler.core.config import ConfigLoader, DesiredState

__all__ = ["Checked", "check", "desired", "load_config", "provider_types", "schema"]


def provider_types() -> ProviderRegistry:
    """The provider types installed: the built-in ones and every plugin's."""
    return load_registry()


class Checked(NamedTuple):
    """What `check` found: how many files, their state when valid, else their problems."""

    files: int
    state: DesiredState | None  # None when there are problems
    problems: list[Problem]


def check(paths: Sequence[Path], check_env: bool = False) -> Checked:
    """Read and validate the files under `paths`; with `check_env`, every secret reference must
    name a variable set in this environment."""
    from reconciler.adapters.files import load_sources, paused_gc
    from reconciler.core.config import ConfigLoader

    files = 0
    try:
        sources = load_sources(list(paths))
        files = len(sources)
        with paused_gc():
            state = ConfigLoader(load_registry()).load(
                sources, env=os.environ if check_env else None
            )
    except ConfigInvalid as exc:
        return Checked(files, None, exc.problems)
    return Checked(files, state, [])


def load_config(
    paths: Sequence[Path], loader: ConfigLoader, env: Mapping[str, str] | None = None
) -> DesiredState:
    """Read and validate the config files with `loader`; raises `ConfigInvalid`."""
    from reconciler.adapters.files import load_sources, paused_gc

    sources = load_sources(list(paths))
    with paused_gc():
        return loader.load(sources, env=env)


def desired(config_dir: Path) -> DesiredState:
    """The state the files under `config_dir` declare; raises `ConfigInvalid`."""
    from reconciler.core.config import ConfigLoader

    return load_config([config_dir], ConfigLoader(load_registry()))


def schema() -> str:
    """The JSON Schema of the config files, with every installed provider type."""
    from reconciler.core.schema import schema_text

    return schema_text(load_registry())
