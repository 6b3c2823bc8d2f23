"""The database's state as config files (`reconciler export`), for adopting a database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from reconciler.core.plan import Kind, Observed
from reconciler.core.registry import ProviderRegistry
from reconciler.core.spec import RouteSpec
from reconciler.core.yamldoc import plain_scalar

HEADER = "# Exported by `reconciler export`. Review, commit, then `reconciler apply` adopts it.\n"


class _Dumper(yaml.SafeDumper):
    """Quotes every string that reconciler's loader would not read back as the same string."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    back = plain_scalar(value)
    quote = not isinstance(back, str) or back != value
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"' if quote else None)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


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


def write_export(directory: Path, files: dict[str, dict[str, Any]]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in files.items():
        path = directory / name
        path.write_text(HEADER + dump_yaml(document), encoding="utf-8")
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
