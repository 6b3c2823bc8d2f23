"""The providers view (`/providers`): every provider, where it is declared, who uses it, its probe.

The settings pages of the application this replaces, `/settings/ollama` and its later name
`/settings/llm-providers`, redirect here (308), so bookmarks of them still lead somewhere useful.
Every value on the page comes from a database row that may have been written by hand: all of
it is escaped, bounded, and credentials appear only as their `{env: NAME}` references.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import Engine

from reconciler.core.readiness import Status
from reconciler.core.text import untrusted
from reconciler.daemon.page import DISABLED_COLOUR, STATUS_COLOURS, footer, head, when
from reconciler.daemon.responses import page, read
from reconciler.daemon.state import DaemonState
from reconciler.service.catalog import (
    Catalog,
    Probe,
    Provider,
    endpoint_fields,
    last_probe,
    read_catalog,
    uses,
)

PATH = "/providers"
LEGACY_PAGES = ("/settings/ollama", "/settings/llm-providers")
PERMANENT_REDIRECT = 308
_ENABLED_COLOUR = "#1a7f37"
_ROUTE_DISABLED = " <span class='meta'>(route disabled)</span>"


def router(engine: Engine, state: DaemonState) -> APIRouter:
    """The providers view, and the legacy settings pages redirected to it."""
    pages = APIRouter(include_in_schema=False)

    @pages.get(PATH, response_class=HTMLResponse)
    async def providers() -> HTMLResponse:
        catalog: Catalog = await read(engine, read_catalog)
        return page(providers_page(catalog, state.config_dir, datetime.now(UTC)))

    async def moved() -> RedirectResponse:
        return RedirectResponse(PATH, status_code=PERMANENT_REDIRECT)

    for legacy in LEGACY_PAGES:
        pages.add_api_route(legacy, moved, methods=["GET"])
    return pages


def providers_page(catalog: Catalog, config_dir: str, now: datetime) -> str:
    """The page at `/providers`. Purely computational."""
    rows = "".join(_provider_row(catalog, p, now) for p in catalog.providers)
    table = (
        "<table><thead><tr><th>Provider</th><th>Endpoint</th><th>Declared in</th>"
        f"<th>Used by</th><th>Last probe</th></tr></thead><tbody>{rows}</tbody></table>"
        if rows
        else "<p class='meta'>The database holds no providers.</p>"
    )
    return "\n".join(
        [
            head("reconciler: LLM providers"),
            "<h1>LLM providers</h1>",
            "<p class='meta'>The providers in the database, where each is declared, the routes "
            "that use it and its last probe. They are managed as code: edit the files under "
            f"<code>{_text(config_dir)}</code> and run <code>reconciler apply</code>; rows no "
            "file declares are adopted into files with <code>reconciler export</code>. Back to "
            "the <a href='/'>status page</a>. JSON: <a href='/api/v1/providers'>providers</a>, "
            "<a href='/api/v1/routes'>routes</a>, <a href='/api/ollama/config'>legacy Ollama "
            "settings</a>.</p>",
            table,
            footer(),
            "</body></html>",
        ]
    )


def _provider_row(catalog: Catalog, provider: Provider, now: datetime) -> str:
    state, colour = ("enabled", _ENABLED_COLOUR) if provider.enabled else ("disabled", None)
    badge = _badge(state, colour or DISABLED_COLOUR)
    return (
        f"<tr><td><b>{_text(provider.name)}</b><div class='meta'>{_text(provider.type)}</div>"
        f"{badge}</td><td>{_endpoint(provider.config)}</td><td>{_declared(provider)}</td>"
        f"<td>{_uses(catalog, provider.name)}</td>"
        f"<td>{_probe(last_probe(catalog, provider.name), now)}</td></tr>"
    )


def _endpoint(config: dict[str, Any]) -> str:
    items = []
    for name, value in endpoint_fields(config).items():
        if name == "headers":
            items += [
                f"<li>header <code>{_text(header)}</code>: <code>{_value(shown)}</code></li>"
                for header, shown in value.items()
            ]
        elif value is not None:
            items.append(f"<li>{_text(name)} <code>{_value(value)}</code></li>")
    return f"<ul class='mono'>{''.join(items)}</ul>" if items else "&mdash;"


def _declared(provider: Provider) -> str:
    origin = provider.origin
    managed = f"<div class='meta'>managed_by {_text(origin.managed_by)}</div>"
    if origin.source is not None:
        return f"<code>{_text(origin.source)}</code>{managed}"
    adopt = "" if origin.managed else "; adopt it with <code>reconciler export</code>"
    return f"<span class='meta'>no file{adopt}</span>{managed}"


def _uses(catalog: Catalog, name: str) -> str:
    found = uses(catalog, name)
    if not found:
        return "<span class='meta'>no route</span>"
    items = "".join(
        f"<li><b>{_text(u.task)}</b> {_text(u.role)}: <code>{_text(u.model)}</code>"
        f"{'' if u.enabled else _ROUTE_DISABLED}</li>"
        for u in found
    )
    return f"<ul>{items}</ul>"


def _probe(probe: Probe | None, now: datetime) -> str:
    if probe is None:
        return "<span class='meta'>none recorded</span>"
    colour = STATUS_COLOURS.get(Status(probe.status), DISABLED_COLOUR)
    parts = [_badge(probe.status, colour)]
    if probe.reason:
        parts.append(f"<code>{_text(probe.reason)}</code>")
    if probe.latency_ms is not None:
        parts.append(f"{probe.latency_ms:.0f} ms")
    checked = f"{when(probe.checked_at, now)}, for task {_text(probe.task)}"
    parts.append(f"<div class='meta'>{checked}</div>")
    return " ".join(parts)


def _badge(word: str, colour: str) -> str:
    return f"<span class='badge' style='background:{colour}'>{_text(word)}</span>"


def _value(value: Any) -> str:
    """A field's value as the files write it: `{env: NAME}` for a reference."""
    if isinstance(value, dict) and set(value) == {"env"}:
        return "{env: " + _text(value["env"]) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"  # 60, as the files write it, not 60.0
    return _text(value)


def _text(value: object) -> str:
    """Any value from a row, made safe to show: controls escaped, bounded, HTML-escaped."""
    return escape(untrusted(str(value), limit=300))
