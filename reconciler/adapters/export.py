"""The database's state as config files (`reconciler export`), for adopting a database.

A row in the database may hold what no config file could: an unmanaged legacy row was written
by hand. `export_files` writes nothing unless every row passes the loader's own checks and the
files, loaded back by the loader, declare exactly the specs the rows hold.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from reconciler.adapters.files import paused_gc
from reconciler.core.config import ConfigLoader
from reconciler.core.plan import Kind, Observed, desired_items, diff, essence_hash
from reconciler.core.plan_doc import route_references, shown_key
from reconciler.core.registry import ProviderRegistry
from reconciler.core.row_check import essence_of, row_problems
from reconciler.core.spec import ProviderSpec, RouteSpec
from reconciler.core.text import has_control
from reconciler.core.yamldoc import plain_scalar
from reconciler.errors import ConfigInvalid

HEADER = "# Exported by `reconciler export`. Review, commit, then `reconciler apply` adopts it.\n"

Ident = tuple[Kind, str]


class _Dumper(yaml.SafeDumper):
    """Quotes every string that reconciler's loader would not read back as the same string."""

    def ignore_aliases(self, data: Any) -> bool:
        return True  # the loader refuses anchors and aliases


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    back = plain_scalar(value)
    # Double quotes escape every control character; other styles fold line separators.
    quote = not isinstance(back, str) or back != value or has_control(value)
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"' if quote else None)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def export_files(
    observed: list[Observed], registry: ProviderRegistry
) -> tuple[dict[str, bytes], list[str]]:
    """`{file name: content}` to write, and every reason not to write any of it."""
    specs, problems = _checked_rows(observed, registry)
    if problems:
        return {}, problems
    # The dumper escapes every character it cannot write as it is: the text always encodes.
    files = {
        name: (HEADER + dump_yaml(document)).encode("utf-8")
        for name, document in export_documents(observed, registry).items()
    }
    return files, _reload_problems(files, specs, registry)


def _checked_rows(
    observed: list[Observed], registry: ProviderRegistry
) -> tuple[dict[Ident, ProviderSpec | RouteSpec], list[str]]:
    """Each row's spec, by the loader's checks, and the references between the rows."""
    specs: dict[Ident, ProviderSpec | RouteSpec] = {}
    problems: list[str] = []
    providers = {o.key for o in observed if o.kind is Kind.provider}
    for row in sorted(observed, key=lambda o: (o.kind, o.key)):
        what = f"{row.kind} {shown_key(row.key)} in the database"
        spec, found = row_problems(row.kind, row.key, row.essence, registry)
        problems += [f"{what} {p}" for p in found]
        if spec is None:
            continue
        specs[(row.kind, row.key)] = spec
        if isinstance(spec, RouteSpec):
            essence = essence_of(row.key, spec)
            problems += [f"{what} {p}" for p in route_references(essence, providers)]
    return specs, problems


def _reload_problems(
    files: dict[str, bytes],
    specs: dict[Ident, ProviderSpec | RouteSpec],
    registry: ProviderRegistry,
) -> list[str]:
    """What the loader says of the files, or the rows it reads back differently."""
    try:
        with paused_gc():
            state = ConfigLoader(registry).load(list(files.items()))
    except ConfigInvalid as exc:
        return [f"{p.file} (not written): {p.path}: {p.message}" for p in exc.problems]
    reloaded = {(d.kind, d.key): d.essence for d in desired_items(state)}
    problems = []
    for (kind, key), spec in specs.items():
        expected = essence_of(key, spec)
        back = reloaded.get((kind, key))
        if back is None or essence_hash(back) != essence_hash(expected):
            fields = [c.path for c in diff(expected, back)][:5] if back else []
            problems.append(
                f"{kind} {shown_key(key)} in the database would not be read back from YAML as "
                f"it is stored{' (' + ', '.join(fields) + ')' if fields else ''}"
            )
    return problems


def export_documents(
    observed: list[Observed], registry: ProviderRegistry
) -> dict[str, dict[str, Any]]:
    """`{file name: document}` for the providers and the routes, concise (defaults left out)."""
    provider_docs = {
        o.key: _provider(o, registry)
        for o in sorted(observed, key=lambda o: o.key)
        if o.kind is Kind.provider
    }
    route_docs = {
        o.key: _concise(RouteSpec, o.essence)
        for o in sorted(observed, key=lambda o: o.key)
        if o.kind is Kind.route
    }
    files: dict[str, dict[str, Any]] = {}
    if provider_docs:
        files["providers.yaml"] = {"version": 1, "providers": provider_docs}
    if route_docs:
        files["routes.yaml"] = {"version": 1, "routes": route_docs}
    return files


def existing(directory: Path, files: dict[str, bytes]) -> list[Path]:
    """The files of `export_files` already under `directory` (a dangling link counts)."""
    return [directory / name for name in files if os.path.lexists(directory / name)]


def write_export(directory: Path, files: dict[str, bytes], overwrite: bool = False) -> list[Path]:
    """Write the files of `export_files` under `directory`; without `overwrite`, a file that
    exists by then raises `FileExistsError` (check `existing` first to write none)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in files.items():
        path = directory / name
        with path.open("wb" if overwrite else "xb") as file:
            file.write(content)
        written.append(path)
    return written


def _provider(observed: Observed, registry: ProviderRegistry) -> dict[str, Any]:
    essence = observed.essence
    full = {k: essence[k] for k in ("type", "enabled", "protect")} | dict(essence["config"])
    provider_type = registry.get(essence["type"])
    if provider_type is None:
        return full
    concise = _concise(provider_type.config_model, full)
    return {"type": essence["type"], **{k: v for k, v in concise.items() if k != "type"}}


def _concise(model: Any, data: dict[str, Any]) -> dict[str, Any]:
    """Without the fields equal to their defaults; as stored when it does not validate."""
    try:
        spec = model.model_validate(data)
    except ValidationError:
        return data
    dumped: dict[str, Any] = spec.model_dump(mode="json", exclude_defaults=True)
    return dumped
