"""The scoring queue in the database: enqueue, claim under a lease, renew, finish, release.

A job's row also holds its one result, so an item can never have two. Claims use
`FOR UPDATE SKIP LOCKED` on PostgreSQL and an immediate (write-locked) transaction on SQLite;
finishing a job checks that the lease is still this worker's, so a worker whose lease expired
and was taken over cannot overwrite the new owner's work.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from reconciler.adapters.db.engine import is_sqlite
from reconciler.adapters.db.tables import routes, scoring_jobs

QUEUED, LEASED, DONE, DEAD = "queued", "leased", "done", "dead"
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: int
    task: str
    item_id: str
    payload: dict[str, Any]
    attempts: int


def enqueue(
    engine: Engine, task: str, items: Sequence[tuple[str, dict[str, Any]]], now: datetime
) -> tuple[int, int]:
    """Add the items not yet queued for `task`; returns (added, skipped). One transaction.

    An item already there is skipped by the insert itself (`ON CONFLICT DO NOTHING`), so two
    enqueues of the same items at once add each item once and neither fails.
    """
    insert = sqlite_insert if is_sqlite(engine) else postgresql_insert
    added = 0
    with _begin(engine) as conn:
        for start in range(0, len(items), _CHUNK):
            rows = [_new_row(task, i, p, now) for i, p in items[start : start + _CHUNK]]
            statement = (
                insert(scoring_jobs)
                .values(rows)
                .on_conflict_do_nothing(index_elements=["task", "item_id"])
                .returning(scoring_jobs.c.id)
            )
            added += len(conn.execute(statement).all())
    return added, len(items) - added


def _new_row(task: str, item_id: str, payload: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "task": task,
        "item_id": item_id,
        "payload": payload,
        "status": QUEUED,
        "attempts": 0,
        "not_before": now,
        "created_at": now,
        "updated_at": now,
    }


def claim(
    engine: Engine,
    owner: str,
    tasks: Iterable[str],
    limit: int,
    lease: timedelta,
    now: datetime,
) -> list[ClaimedJob]:
    """Lease up to `limit` due jobs of `tasks` (queued, or leased with an expired lease)."""
    tasks = sorted(set(tasks))
    if not tasks or limit <= 0:
        return []
    due = or_(
        and_(scoring_jobs.c.status == QUEUED, scoring_jobs.c.not_before <= now),
        and_(scoring_jobs.c.status == LEASED, scoring_jobs.c.lease_expires_at < now),
    )
    pick = (
        select(scoring_jobs.c.id)
        .where(scoring_jobs.c.task.in_(tasks), due)
        .order_by(scoring_jobs.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    # A read first: an idle worker polling an empty queue takes no write lock.
    with engine.connect() as conn:
        probe = select(scoring_jobs.c.id).where(scoring_jobs.c.task.in_(tasks), due).limit(1)
        if conn.execute(probe).first() is None:
            return []
    with _begin(engine) as conn:
        ids = list(conn.execute(pick).scalars())
        if not ids:
            return []
        conn.execute(
            update(scoring_jobs)
            .where(scoring_jobs.c.id.in_(ids))
            .values(
                status=LEASED,
                lease_owner=owner,
                lease_expires_at=now + lease,
                attempts=scoring_jobs.c.attempts + 1,
                updated_at=now,
            )
        )
        rows = conn.execute(
            select(
                scoring_jobs.c.id,
                scoring_jobs.c.task,
                scoring_jobs.c.item_id,
                scoring_jobs.c.payload,
                scoring_jobs.c.attempts,
            )
            .where(scoring_jobs.c.id.in_(ids))
            .order_by(scoring_jobs.c.id)
        )
        return [ClaimedJob(r.id, r.task, r.item_id, r.payload, r.attempts) for r in rows]


def finish(engine: Engine, job_id: int, owner: str, values: dict[str, Any]) -> bool:
    """Write a job's outcome if this worker still holds its lease; False when it does not."""
    values = {**values, "lease_owner": None, "lease_expires_at": None}
    return _update_held(engine, owner, [job_id], values) == 1


def renew(engine: Engine, owner: str, job_ids: Iterable[int], until: datetime) -> int:
    """Extend the leases this worker still holds on `job_ids` to `until`; returns how many."""
    return _update_held(engine, owner, job_ids, {"lease_expires_at": until})


def release(engine: Engine, owner: str, job_ids: Iterable[int], now: datetime) -> int:
    """Give leased jobs back to the queue without counting the attempt (on shutdown)."""
    values = {
        "status": QUEUED,
        "lease_owner": None,
        "lease_expires_at": None,
        "attempts": scoring_jobs.c.attempts - 1,
        "not_before": now,
        "updated_at": now,
    }
    return _update_held(engine, owner, job_ids, values)


def _update_held(engine: Engine, owner: str, job_ids: Iterable[int], values: dict[str, Any]) -> int:
    """Update the jobs whose lease `owner` still holds; returns how many it did."""
    ids = list(job_ids)
    if not ids:
        return 0
    held = (
        scoring_jobs.c.id.in_(ids),
        scoring_jobs.c.lease_owner == owner,
        scoring_jobs.c.status == LEASED,
    )
    with _begin(engine) as conn:
        result = conn.execute(update(scoring_jobs).where(*held).values(**values))
        return result.rowcount


def counts(conn: Connection) -> dict[tuple[str, str], int]:
    """Jobs by (task, status)."""
    query = select(scoring_jobs.c.task, scoring_jobs.c.status, func.count()).group_by(
        scoring_jobs.c.task, scoring_jobs.c.status
    )
    return {(task, status): n for task, status, n in conn.execute(query)}


def dead_jobs(conn: Connection, limit: int) -> list[dict[str, Any]]:
    columns = ("task", "item_id", "attempts", "error", "finished_at")
    query = (
        select(*(scoring_jobs.c[c] for c in columns))
        .where(scoring_jobs.c.status == DEAD)
        .order_by(scoring_jobs.c.finished_at.desc(), scoring_jobs.c.id)
        .limit(limit)
    )
    return [dict(row._mapping) for row in conn.execute(query)]


def results(conn: Connection, task: str | None = None) -> list[dict[str, Any]]:
    """Finished jobs with their results, by id."""
    columns = ("task", "item_id", "result", "provider", "model", "latency_ms", "attempts")
    query = select(*(scoring_jobs.c[c] for c in columns)).where(scoring_jobs.c.status == DONE)
    if task is not None:
        query = query.where(scoring_jobs.c.task == task)
    return [dict(row._mapping) for row in conn.execute(query.order_by(scoring_jobs.c.id))]


def route_rows(conn: Connection) -> dict[str, dict[str, Any]]:
    """Every route with what scoring needs (prompt, output schema, params, fallbacks)."""
    names = ("task", "provider", "model", "enabled", "params", "fallbacks", "prompt")
    query = select(*(routes.c[n] for n in names), routes.c.output_schema)
    return {row.task: dict(row._mapping) for row in conn.execute(query)}


def pending_tasks(conn: Connection) -> list[str]:
    """Tasks with queued or leased jobs."""
    query = (
        select(scoring_jobs.c.task)
        .where(scoring_jobs.c.status.in_((QUEUED, LEASED)))
        .group_by(scoring_jobs.c.task)
    )
    return list(conn.execute(query).scalars())


def next_due(conn: Connection, tasks: Iterable[str]) -> tuple[datetime, int] | None:
    """When the earliest queued job of `tasks` is due, and how many are queued; None if none."""
    query = select(func.min(scoring_jobs.c.not_before), func.count()).where(
        scoring_jobs.c.status == QUEUED, scoring_jobs.c.task.in_(list(tasks))
    )
    earliest, count = conn.execute(query).one()
    return None if earliest is None else (earliest, count)


class _begin:
    """A write transaction; on SQLite an immediate one, so claims never interleave."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._context: Any = None

    def __enter__(self) -> Connection:
        engine = self._engine
        if is_sqlite(engine):
            engine = engine.execution_options(sqlite_begin="IMMEDIATE")
        self._context = engine.begin()
        conn: Connection = self._context.__enter__()
        return conn

    def __exit__(self, *exc: object) -> None:
        self._context.__exit__(*exc)
