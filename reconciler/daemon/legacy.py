"""The API of the application this replaces, kept answerable: `/api/ollama/config`.

That application kept one Ollama server's settings in its `ollama_settings` row (migration 0002
backfills it into provider `ollama` and route `scoring`). A read answers in that row's shape, with
the endpoint fields added, from the provider and model the `scoring` route resolves to. A write
is refused with 409: the files say what the settings are, and the answer names the file and line
to edit, or, for rows no file declares yet, the command that adopts them into files.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from reconciler.daemon.responses import read
from reconciler.daemon.state import DaemonState
from reconciler.service.catalog import (
    Catalog,
    Origin,
    Provider,
    Route,
    endpoint_fields,
    read_catalog,
)
from reconciler.service.redaction import redact_tree

PATH = "/api/ollama/config"
LEGACY_TASK = "scoring"
WRITES = ["PUT", "POST", "PATCH"]
CONFLICT = 409
# The endpoint fields of the legacy answer; `keep_alive` only where the provider type has it.
_FIELDS = ("timeout_s", "connect_timeout_s", "verify_tls")
_APPLY = "reconciler apply"
_EXPORT = "reconciler export --out DIR"


def router(engine: Engine, state: DaemonState) -> APIRouter:
    """`GET` answers in the legacy shape; `PUT`, `POST` and `PATCH` get 409 and what to do."""
    api = APIRouter(tags=["legacy"])

    @api.get(PATH, deprecated=True)
    async def legacy_read() -> JSONResponse:
        """The Ollama settings in their old shape: the `scoring` route's primary provider and model.

        404 when no `scoring` route is declared.
        """
        catalog: Catalog = await read(engine, read_catalog)
        config = legacy_config(catalog)
        if config is None:
            return JSONResponse(redact_tree(missing_route(state.config_dir)), status_code=404)
        return JSONResponse(redact_tree(config))

    async def legacy_write() -> JSONResponse:
        """Refused with 409: the settings are managed as code; the answer names what to edit."""
        catalog: Catalog = await read(engine, read_catalog)
        return JSONResponse(redact_tree(refusal(catalog, state.config_dir)), status_code=CONFLICT)

    for method in WRITES:  # one operation each, so that every one has its own OpenAPI id
        operation = f"legacy_{method.lower()}"
        api.add_api_route(
            PATH, legacy_write, methods=[method], operation_id=operation, deprecated=True
        )
    return api


def legacy_config(catalog: Catalog) -> dict[str, Any] | None:
    """The legacy answer, or None without a `scoring` route. Purely computational."""
    route = catalog.route(LEGACY_TASK)
    if route is None:
        return None
    provider = catalog.provider(route.provider)
    fields = endpoint_fields(provider.config) if provider else {}
    optional = {"keep_alive": fields["keep_alive"]} if "keep_alive" in fields else {}
    return {
        "base_url": fields.get("base_url"),
        "model": route.model,
        "enabled": route.enabled and provider is not None and provider.enabled,
        **{name: fields.get(name) for name in _FIELDS},
        **optional,
        "headers": fields.get("headers", {}),
        "api_key": fields.get("api_key"),
        "task": route.task,
        "provider": route.provider,
        "provider_type": provider.type if provider else None,
        "source": route.origin.source,
        "provider_source": provider.origin.source if provider else None,
        "managed_by": _managed_by(route, provider),
        "updated_at": _updated_at(route, provider),
    }


def _managed_by(route: Route, provider: Provider | None) -> str:
    """`config` when the files manage the route and its provider; else what manages the other."""
    for origin in (route.origin, provider.origin if provider else None):
        if origin is not None and not origin.managed:
            return origin.managed_by
    return route.origin.managed_by


def _updated_at(route: Route, provider: Provider | None) -> str | None:
    moments = [o.updated_at for o in _declared(route, provider).values() if o.updated_at]
    return max(moments).isoformat() if moments else None


def _declared(route: Route, provider: Provider | None) -> dict[str, Origin]:
    """`{"routes.scoring": origin, "providers.NAME": origin}`."""
    rows = {f"routes.{route.task}": route.origin}
    if provider is not None:
        rows[f"providers.{provider.name}"] = provider.origin
    return rows


def missing_route(config_dir: str) -> dict[str, Any]:
    """The 404 answer: which route is missing, and how to declare it."""
    return {
        "error": "no_route",
        "task": LEGACY_TASK,
        "detail": f"no route for task {LEGACY_TASK}: this API answers with the provider and "
        f"model of the `{LEGACY_TASK}` route. Declare it in a file under {config_dir}, e.g. "
        f"`routes: {{{LEGACY_TASK}: {{provider: local-ollama, model: llama3.1:8b}}}}` beside the "
        f"provider it names, then run `{_APPLY}`",
    }


def refusal(catalog: Catalog, config_dir: str) -> dict[str, Any]:
    """The 409 answer to a write: the file and line to edit, or the command that adopts rows."""
    route = catalog.route(LEGACY_TASK)
    if route is None:
        detail = (
            f"the Ollama settings are managed as code and no route for task {LEGACY_TASK} is "
            f"declared: declare routes.{LEGACY_TASK} (provider and model) in a file under "
            f"{config_dir}, then run `{_APPLY}`"
        )
        return _conflict(detail, {}, _APPLY)
    declared = _declared(route, catalog.provider(route.provider))
    unmanaged = {what: o for what, o in declared.items() if not o.managed}
    if unmanaged:
        rows = ", ".join(f"{what} (managed_by {o.managed_by!r})" for what, o in unmanaged.items())
        detail = (
            f"the Ollama settings are managed as code, and these rows are not declared in any "
            f"file yet: {rows}. This API does not change them: run `{_EXPORT}` to write them as "
            f"config files, put those under {config_dir} and commit them, then edit them there "
            f"and run `{_APPLY}`"
        )
        return _conflict(detail, declared, _EXPORT)
    places = " and ".join(_place(what, o) for what, o in declared.items())
    detail = (
        f"the Ollama settings are managed as code: edit {places}, then run `{_APPLY}` "
        "(a running `reconciler run` applies saved files by itself)"
    )
    return _conflict(detail, declared, _APPLY)


def _place(what: str, origin: Origin) -> str:
    if origin.source_file is None:
        return f"the file that declares {what}"
    line = f" at line {origin.source_line}" if origin.source_line else ""
    return f"{origin.source_file}{line} ({what})"


def _conflict(detail: str, declared: dict[str, Origin], run: str) -> dict[str, Any]:
    return {
        "error": "managed_as_code",
        "detail": detail,
        "edit": [
            {"what": what, "file": o.source_file, "line": o.source_line, "managed_by": o.managed_by}
            for what, o in declared.items()
        ],
        "run": run,
    }
