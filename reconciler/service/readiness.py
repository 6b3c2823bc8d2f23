"""Readiness: read the routes, probe their providers once each, decide, store the verdicts.

One code path for `reconciler status --probe`, `plan --probe` and the daemon's readiness loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine

from reconciler.adapters.db import queue_store, revision, store
from reconciler.adapters.db import readiness_store as stored
from reconciler.adapters.plugins import load_registry
from reconciler.adapters.providers.builtin import driver_of
from reconciler.adapters.providers.driver import ProviderDriver
from reconciler.adapters.providers.probe import Prober as Prober  # noqa: PLC0414 (callers keep one)
from reconciler.adapters.providers.probe import Target
from reconciler.core.config import DesiredState
from reconciler.core.readiness import (
    ProbeReport,
    ProviderView,
    Reason,
    RouteView,
    Status,
    Verdict,
    no_route,
    targets_to_probe,
    verdicts,
)
from reconciler.core.registry import ProviderRegistry
from reconciler.core.spec import ProviderSpec

DEFAULT_INTERVAL_S = 30.0
STALE_AFTER_INTERVALS = 3  # a verdict older than this many intervals is stale


@dataclass(frozen=True, slots=True)
class Inputs:
    """What one readiness round decides on."""

    generation: int
    routes: tuple[RouteView, ...]
    providers: tuple[ProviderView, ...]
    specs: Mapping[str, ProviderSpec]
    # Providers whose stored config cannot be used, with the reason why.
    unusable: Mapping[str, str]
    # Tasks with jobs waiting in the scoring queue but no route.
    unrouted: tuple[str, ...] = ()
    # Each provider's driver, from its type in the registry.
    drivers: Mapping[str, ProviderDriver] = field(default_factory=dict)

    def targets(self) -> list[Target]:
        wanted = targets_to_probe(self.routes, self.providers)
        return [
            Target(name, self.specs[name], frozenset(models), self.drivers.get(name))
            for name, models in sorted(wanted.items())
            if name in self.specs
        ]


def provider_view(
    name: str,
    type_name: str,
    enabled: bool,
    spec: ProviderSpec | None,
    driver: ProviderDriver | None,
) -> ProviderView:
    """What readiness needs of a provider, with its driver's remedies."""
    refs = spec.endpoint.secret_refs() if spec else []
    return ProviderView(
        name,
        type_name,
        enabled,
        spec.endpoint.base_url if spec else "",
        tuple(r.env for r in refs),
        driver.remedy if driver is not None else None,
    )


def inputs_from_database(
    engine: Engine, registry: ProviderRegistry, tasks: Collection[str] | None = None
) -> Inputs:
    """The routes and providers as the database has them now: every route, or the routes of
    `tasks` only (with every provider), for a round that decides just those."""
    revision.require_current(engine)
    with engine.connect() as conn:
        generation = store.current_generation(conn)
        provider_rows = stored.read_provider_rows(conn)
        route_rows = stored.read_route_rows(conn, tasks)
        waiting = queue_store.pending_tasks(conn)
    if tasks is not None:
        waiting = [task for task in waiting if task in tasks]
    specs: dict[str, ProviderSpec] = {}
    unusable: dict[str, str] = {}
    drivers: dict[str, ProviderDriver] = {}
    views = []
    for row in provider_rows:
        name = row["name"]
        spec, problem = _spec_of(row, registry)
        if spec is not None:
            specs[name] = spec
        else:
            unusable[name] = problem
        driver = driver_of(registry.get(row["type"]))
        if driver is not None:
            drivers[name] = driver
        views.append(provider_view(name, row["type"], row["enabled"], spec, driver))
    written = {row["name"]: row["generation"] or 0 for row in provider_rows}
    route_views = []
    for row in route_rows:
        fallbacks = tuple((f["provider"], f["model"]) for f in row["fallbacks"])
        names = {row["provider"], *(provider for provider, _ in fallbacks)}
        as_of = max([row["generation"] or 0, *(written.get(name, 0) for name in names)])
        route_views.append(
            RouteView(
                row["task"],
                row["provider"],
                row["model"],
                row["enabled"],
                row["required"],
                fallbacks,
                as_of,
            )
        )
    routed = {route.task for route in route_views}
    unrouted = tuple(sorted(task for task in waiting if task not in routed))
    return Inputs(generation, tuple(route_views), tuple(views), specs, unusable, unrouted, drivers)


def inputs_from_files(
    state: DesiredState, generation: int, registry: ProviderRegistry | None = None
) -> Inputs:
    """The routes and providers as the files declare them: what an apply would make."""
    registry = registry or load_registry()
    specs = {name: p.spec for name, p in state.providers.items()}
    drivers = {
        name: driver
        for name, spec in specs.items()
        if (driver := driver_of(registry.get(spec.type))) is not None
    }
    views = tuple(
        provider_view(name, spec.type, spec.enabled, spec, drivers.get(name))
        for name, spec in sorted(specs.items())
    )
    routes = tuple(
        RouteView(
            task,
            r.spec.provider,
            r.spec.model,
            r.spec.enabled,
            r.spec.required,
            tuple((f.provider, f.model) for f in r.spec.fallbacks),
            generation,
        )
        for task, r in sorted(state.routes.items())
    )
    return Inputs(generation, routes, views, specs, {}, (), drivers)


def _spec_of(row: dict[str, Any], registry: ProviderRegistry) -> tuple[ProviderSpec | None, str]:
    provider_type = registry.get(row["type"])
    if provider_type is None:
        return None, f"provider type {row['type']!r} is not installed here"
    data = {**row["config"], "type": row["type"], "enabled": row["enabled"]}
    data["protect"] = row["protect"]
    try:
        return provider_type.config_model.model_validate(data), ""
    except ValidationError:
        return None, "its stored config does not validate; run `reconciler apply`"


async def probe(inputs: Inputs, prober: Prober) -> dict[str, ProbeReport]:
    """One probe per provider in use, all at once."""
    reports = await prober.probe_all(inputs.targets())
    now = datetime.now(UTC)
    for name, problem in inputs.unusable.items():
        reports[name] = ProbeReport(name, now, 0.0, Reason.bad_response, problem)
    return reports


def decide(inputs: Inputs, reports: Mapping[str, ProbeReport], now: datetime) -> list[Verdict]:
    found = verdicts(inputs.routes, inputs.providers, reports, inputs.generation, now)
    found += [no_route(task, inputs.generation, now) for task in inputs.unrouted]
    return sorted(found, key=lambda v: v.task)


def save(engine: Engine, found: list[Verdict]) -> None:
    with engine.begin() as conn:
        stored.save_verdicts(conn, found)


def affected_tasks(inputs: Inputs, changed: Iterable[tuple[str, str]]) -> set[str]:
    """The tasks whose verdict an apply that changed `changed` rows ((kind, name)) may change:
    the routes it changed, created or deleted, and every route asking a provider it changed."""
    providers = {name for kind, name in changed if kind == "provider"}
    tasks = {name for kind, name in changed if kind == "route"}
    tasks.update(route.task for route in inputs.routes if route.names() & providers)
    return tasks


def only(inputs: Inputs, tasks: set[str]) -> Inputs:
    """These inputs, narrowed to `tasks`: what a round for just those tasks decides on."""
    routes = tuple(route for route in inputs.routes if route.task in tasks)
    unrouted = tuple(task for task in inputs.unrouted if task in tasks)
    return replace(inputs, routes=routes, unrouted=unrouted)


def save_some(engine: Engine, tasks: set[str], found: list[Verdict]) -> None:
    """Replace the verdicts of `tasks` only; every other task's stays as it is."""
    with engine.begin() as conn:
        stored.save_some_verdicts(conn, tasks, found)


def check_now(
    engine: Engine,
    registry: ProviderRegistry,
    env: Mapping[str, str] | None = None,
) -> list[Verdict]:
    """Probe now, store and return the verdicts: `reconciler status --probe`."""
    inputs = inputs_from_database(engine, registry)
    reports = asyncio.run(_probe_once(inputs, env))
    found = decide(inputs, reports, datetime.now(UTC))
    save(engine, found)
    return found


def check_files(
    state: DesiredState,
    env: Mapping[str, str] | None = None,
    generation: int = 0,
    registry: ProviderRegistry | None = None,
) -> list[Verdict]:
    """The verdicts the files' routes would get if applied now: `plan --probe`. Stores nothing."""
    inputs = inputs_from_files(state, generation, registry)
    reports = asyncio.run(_probe_once(inputs, env))
    return decide(inputs, reports, datetime.now(UTC))


async def _probe_once(inputs: Inputs, env: Mapping[str, str] | None) -> dict[str, ProbeReport]:
    prober = Prober(env)
    try:
        return await probe(inputs, prober)
    finally:
        await prober.aclose()


def current(
    engine: Engine,
    registry: ProviderRegistry,
    now: datetime | None = None,
    interval_s: float = DEFAULT_INTERVAL_S,
) -> list[Verdict]:
    """The stored verdicts of today's routes, aged: stale when old or from an older config."""
    now = now or datetime.now(UTC)
    inputs = inputs_from_database(engine, registry)
    with engine.connect() as conn:
        saved = {v.task: v for v in stored.load_verdicts(conn)}
    max_age = timedelta(seconds=interval_s * STALE_AFTER_INTERVALS)
    found = []
    for route in inputs.routes:
        if route.task in saved:
            found.append(saved[route.task].aged(now, max_age, route.as_of))
        elif not route.enabled:  # needs no probe to say
            found += verdicts([route], inputs.providers, {}, inputs.generation, now)
        else:
            found.append(_never_checked(route, inputs.generation))
    found += [no_route(task, inputs.generation, now) for task in inputs.unrouted]
    return sorted(found, key=lambda v: v.task)


def _never_checked(route: RouteView, generation: int) -> Verdict:
    return Verdict(
        task=route.task,
        status=Status.stale,
        reason=None,
        remedy="run `reconciler status --probe`, or the daemon (`reconciler run`)",
        detail="never checked",
        provider=route.provider,
        model=route.model,
        required=route.required,
        generation=generation,
        checked_at=None,
    )


def unservable(found: Iterable[Verdict]) -> list[Verdict]:
    """Enabled routes that nothing could serve."""
    return [
        v for v in found if v.status is Status.not_ready and v.reason is not Reason.route_disabled
    ]


def verdict_document(verdict: Verdict, now: datetime) -> dict[str, Any]:
    """A verdict as the stable JSON of `status --format json` and the daemon's API."""
    checked = verdict.checked_at
    return {
        "task": verdict.task,
        "status": verdict.status.value,
        "required": verdict.required,
        "provider": verdict.provider,
        "model": verdict.model,
        "served_by": verdict.served_by,
        "reason": verdict.reason.value if verdict.reason else None,
        "detail": verdict.detail,
        "remedy": verdict.remedy,
        "checked_at": checked.isoformat() if checked else None,
        "age_s": round((now - checked).total_seconds(), 1) if checked else None,
        "latency_ms": round(verdict.latency_ms, 1) if verdict.latency_ms is not None else None,
        "provider_version": verdict.provider_version,
        "warm": verdict.warm,
        "generation": verdict.generation,
    }
