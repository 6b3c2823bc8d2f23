"""Providers and routes as the providers view and the legacy API show them.

`read_catalog` reads the rows `/api/v1/providers` and `/api/v1/routes` serve, where each row is
declared, and the stored readiness verdicts. Everything after it is purely computational, no
side-effects. A row may have been written by hand, so nothing here trusts its shape, and a
credential is only ever shown as its reference: `{"env": "NAME"}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, select

from reconciler.adapters.db import readiness_store
from reconciler.adapters.db.tables import MANAGED_BY_CONFIG, providers, routes
from reconciler.core.field_rules import NOT_SHOWN, is_credential_name, masked
from reconciler.core.readiness import Reason, Verdict

# Endpoint fields shown, in this order; `headers` and `api_key` only as references.
ENDPOINT_FIELDS = ("base_url", "timeout_s", "connect_timeout_s", "probe_timeout_s", "verify_tls")
# Fields a provider type adds beside `endpoint`, shown where the row has them.
TYPE_FIELDS = ("keep_alive", "health_path", "max_concurrency")
# Verdicts that say nothing of a probe: the provider was never asked.
_UNPROBED = frozenset(
    {Reason.no_route, Reason.route_disabled, Reason.provider_missing, Reason.provider_disabled}
)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a row is declared, and whether the files manage it."""

    managed_by: str
    source_file: str | None = None
    source_line: int | None = None
    updated_at: datetime | None = None

    @property
    def managed(self) -> bool:
        return self.managed_by == MANAGED_BY_CONFIG

    @property
    def source(self) -> str | None:
        """`file:line`, or None when no file declares the row."""
        if self.source_file is None:
            return None
        return f"{self.source_file}:{self.source_line}" if self.source_line else self.source_file


UNKNOWN_ORIGIN = Origin("unknown")


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    type: str
    enabled: bool
    config: dict[str, Any]
    origin: Origin


@dataclass(frozen=True, slots=True)
class Route:
    task: str
    provider: str
    model: str
    enabled: bool
    required: bool
    fallbacks: tuple[tuple[str, str], ...]
    origin: Origin


@dataclass(frozen=True, slots=True)
class Use:
    """A route that sends work to a provider: as its primary, or as fallback number N."""

    task: str
    role: str  # "primary" | "fallback 1" ...
    model: str
    enabled: bool = True  # the route's


@dataclass(frozen=True, slots=True)
class Probe:
    """A provider's last probe, as the stored verdict of a task it serves records it."""

    task: str
    status: str
    reason: str | None
    latency_ms: float | None
    checked_at: datetime


@dataclass(frozen=True, slots=True)
class Catalog:
    providers: tuple[Provider, ...]
    routes: tuple[Route, ...]
    verdicts: tuple[Verdict, ...]

    def provider(self, name: str) -> Provider | None:
        return next((p for p in self.providers if p.name == name), None)

    def route(self, task: str) -> Route | None:
        return next((r for r in self.routes if r.task == task), None)


def read_catalog(conn: Connection) -> Catalog:
    """The provider and route rows, where each is declared, and the stored verdicts."""
    provider_origins = _origins(conn, providers, "name")
    route_origins = _origins(conn, routes, "task")
    return Catalog(
        providers=tuple(
            _provider(row, provider_origins) for row in readiness_store.read_provider_rows(conn)
        ),
        routes=tuple(_route(row, route_origins) for row in readiness_store.read_route_rows(conn)),
        verdicts=tuple(readiness_store.load_verdicts(conn)),
    )


def _origins(conn: Connection, table: Table, key: str) -> dict[str, Origin]:
    columns = ("managed_by", "source_file", "source_line", "updated_at")
    rows = conn.execute(select(table.c[key], *(table.c[c] for c in columns)))
    return {row[0]: Origin(row[1], row[2], row[3], _utc(row[4])) for row in rows}


def _utc(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; they were stored in UTC.
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _provider(row: dict[str, Any], origins: dict[str, Origin]) -> Provider:
    config = row["config"] if isinstance(row["config"], dict) else {}
    origin = origins.get(row["name"], UNKNOWN_ORIGIN)
    return Provider(row["name"], row["type"], bool(row["enabled"]), config, origin)


def _route(row: dict[str, Any], origins: dict[str, Origin]) -> Route:
    fallbacks = row["fallbacks"] if isinstance(row["fallbacks"], list) else []
    pairs = tuple(
        (str(f.get("provider")), str(f.get("model"))) for f in fallbacks if isinstance(f, dict)
    )
    return Route(
        task=row["task"],
        provider=row["provider"],
        model=row["model"],
        enabled=bool(row["enabled"]),
        required=bool(row["required"]),
        fallbacks=pairs,
        origin=origins.get(row["task"], UNKNOWN_ORIGIN),
    )


def uses(catalog: Catalog, provider: str) -> list[Use]:
    """Every route that sends work to `provider`, by task."""
    found = []
    for route in catalog.routes:
        if route.provider == provider:
            found.append(Use(route.task, "primary", route.model, route.enabled))
        found += [
            Use(route.task, f"fallback {n}", model, route.enabled)
            for n, (name, model) in enumerate(route.fallbacks, start=1)
            if name == provider
        ]
    return found


def last_probe(catalog: Catalog, provider: str) -> Probe | None:
    """The newest stored verdict that probed `provider` as a task's primary; None if none did."""
    probed = [
        v
        for v in catalog.verdicts
        if v.provider == provider and v.checked_at is not None and v.reason not in _UNPROBED
    ]
    if not probed:
        return None
    newest = max(probed, key=lambda v: v.checked_at or datetime.min.replace(tzinfo=UTC))
    assert newest.checked_at is not None
    reason = newest.reason.value if newest.reason else None
    return Probe(newest.task, newest.status.value, reason, newest.latency_ms, newest.checked_at)


def endpoint_fields(config: dict[str, Any]) -> dict[str, Any]:
    """A provider's endpoint and type fields, credentials as references and nothing else."""
    endpoint = config.get("endpoint")
    endpoint = endpoint if isinstance(endpoint, dict) else {}
    fields = {name: endpoint[name] for name in ENDPOINT_FIELDS if name in endpoint}
    fields["headers"] = shown_headers(endpoint.get("headers"))
    fields["api_key"] = shown_secret(endpoint.get("api_key"))
    fields |= {name: config[name] for name in TYPE_FIELDS if name in config}
    return fields


def shown_provider_row(row: dict[str, Any]) -> dict[str, Any]:
    """A provider row as `/api/v1/providers` serves it: its config through `shown_config`."""
    config = row.get("config")
    return {**row, "config": shown_config(config if isinstance(config, dict) else {})}


def shown_config(config: dict[str, Any]) -> dict[str, Any]:
    """A provider's stored config with every credential as its reference or a placeholder, at
    any depth, however its field or header is named (`core.field_rules.masked`)."""
    shown: dict[str, Any] = masked(config)
    return shown


def shown_headers(headers: Any) -> dict[str, Any]:
    """Headers as they may be shown: a reference as `{"env": NAME}`, a credential never."""
    if not isinstance(headers, dict):
        return {}
    return {
        str(name): shown_secret(value)
        if is_credential_name(str(name)) or isinstance(value, dict)
        else value
        for name, value in headers.items()
    }


def shown_secret(value: Any) -> dict[str, str] | str | None:
    """`{"env": NAME}` for a reference, None for none, and a placeholder for anything else."""
    if value is None:
        return None
    if isinstance(value, dict) and set(value) == {"env"} and isinstance(value["env"], str):
        return {"env": value["env"]}
    return NOT_SHOWN
