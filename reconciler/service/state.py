"""What the database holds, read for people: the rows as config files, the history of applies."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from reconciler.adapters.db import readiness_store, revision, store
from reconciler.adapters.export import existing, export_files, write_export
from reconciler.adapters.plugins import load_registry
from reconciler.core.plan import Observed

__all__ = [
    "existing",
    "export",
    "observed",
    "provider_rows",
    "revisions",
    "route_rows",
    "write_export",
]


def observed(engine: Engine) -> list[Observed]:
    """The providers and routes as the database has them now."""
    revision.require_current(engine)
    with engine.connect() as conn:
        return store.read_observed(conn)


def export(engine: Engine) -> tuple[dict[str, bytes], list[str]]:
    """The database's rows as config files (name -> content), and every reason not to write
    any of them."""
    return export_files(observed(engine), load_registry())


def revisions(engine: Engine, limit: int, *, check_schema: bool = True) -> list[dict[str, Any]]:
    """The last `limit` applies that changed something, newest first. `check_schema=False`
    for a process that checked the schema when it started (the daemon reports a later change
    itself)."""
    if check_schema:
        revision.require_current(engine)
    with engine.connect() as conn:
        return store.list_revisions(conn, limit)


def provider_rows(engine: Engine) -> list[dict[str, Any]]:
    """The provider rows as stored, by name."""
    with engine.connect() as conn:
        return readiness_store.read_provider_rows(conn)


def route_rows(engine: Engine) -> list[dict[str, Any]]:
    """The route rows as stored, by task."""
    with engine.connect() as conn:
        return readiness_store.read_route_rows(conn)
