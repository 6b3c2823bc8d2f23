"""Readiness in the database: the rows readiness reads, and the verdicts it writes."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from reconciler.adapters.db.tables import providers, routes, task_readiness
from reconciler.core.readiness import Reason, Status, Verdict

_CHUNK = 500  # tasks per DELETE: within every engine's limit on bound parameters


def read_provider_rows(conn: Connection) -> list[dict[str, Any]]:
    """Every provider row: name, type, enabled, protect and the typed config as JSON."""
    columns = (providers.c.name, providers.c.type, providers.c.enabled, providers.c.protect)
    query = select(*columns, providers.c.config, providers.c.generation).order_by(providers.c.name)
    return [dict(row._mapping) for row in conn.execute(query)]


def read_route_rows(conn: Connection, tasks: Collection[str] | None = None) -> list[dict[str, Any]]:
    """Every route row (of `tasks` only, when given), by task."""
    names = ("task", "provider", "model", "enabled", "required", "fallbacks", "generation")
    query = select(*(routes.c[n] for n in names)).order_by(routes.c.task)
    if tasks is None:
        return [dict(row._mapping) for row in conn.execute(query)]
    wanted = sorted(tasks)
    found = []
    for start in range(0, len(wanted), _CHUNK):
        chunk = query.where(routes.c.task.in_(wanted[start : start + _CHUNK]))
        found += [dict(row._mapping) for row in conn.execute(chunk)]
    return sorted(found, key=lambda row: row["task"])


def save_verdicts(conn: Connection, verdicts: list[Verdict]) -> None:
    """Replace the stored verdicts with these, in the caller's transaction."""
    conn.execute(delete(task_readiness))
    if verdicts:
        conn.execute(insert(task_readiness), [_row(v) for v in verdicts])


def save_some_verdicts(conn: Connection, tasks: Collection[str], verdicts: list[Verdict]) -> None:
    """Replace the stored verdicts of `tasks` with these (a task without one has none now);
    every other task's verdict is left as it is. In the caller's transaction."""
    names = sorted(tasks)
    for start in range(0, len(names), _CHUNK):
        conn.execute(
            delete(task_readiness).where(task_readiness.c.task.in_(names[start : start + _CHUNK]))
        )
    if verdicts:
        conn.execute(insert(task_readiness), [_row(v) for v in verdicts])


def load_verdicts(conn: Connection) -> list[Verdict]:
    """The stored verdicts, by task."""
    rows = conn.execute(select(task_readiness).order_by(task_readiness.c.task))
    return [_verdict(dict(row._mapping)) for row in rows]


def _row(verdict: Verdict) -> dict[str, Any]:
    row = asdict(verdict)
    row["status"] = verdict.status.value
    row["reason"] = verdict.reason.value if verdict.reason else None
    return row


def _verdict(row: dict[str, Any]) -> Verdict:
    checked_at: datetime | None = row["checked_at"]
    if (
        checked_at is not None and checked_at.tzinfo is None
    ):  # SQLite hands back naive datetimes; they were stored in UTC
        checked_at = checked_at.replace(tzinfo=UTC)
    return Verdict(
        **{
            **row,
            "status": Status(row["status"]),
            "reason": Reason(row["reason"]) if row["reason"] else None,
            "checked_at": checked_at,
        }
    )
