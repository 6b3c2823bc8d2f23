"""The scoring queue in the database: enqueue, claim under a lease, renew, finish, release;
put dead jobs back; purge finished ones. (Reading it for people: `queue_reads`.)

A job's row also holds its one result, so an item can never have two. Claims use
`FOR UPDATE SKIP LOCKED` on PostgreSQL and an immediate (write-locked) transaction on SQLite;
finishing a job checks that the lease is still this worker's, so a worker whose lease expired
and was taken over cannot overwrite the new owner's work. `retry_dead` and `purge` are single
statements conditioned on a finished status, so a job a worker holds is never touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Text,
    and_,
    bindparam,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from reconciler.adapters.db.engine import is_sqlite
from reconciler.adapters.db.tables import routes, scoring_jobs

QUEUED, LEASED, DONE, DEAD = "queued", "leased", "done", "dead"
FINISHED = (DONE, DEAD)
PREVIOUS = "previous: "  # what a retried job's last error is kept under
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: int
    task: str
    item_id: str
    payload: dict[str, Any]
    attempts: int
    # Taken back from this same owner, whose lease on it had lapsed (rather than queued): the
    # owner's own call for it may still be running.
    lapsed: bool = False


def enqueue(
    engine: Engine, task: str, items: Sequence[tuple[str, dict[str, Any]]], now: datetime
) -> tuple[int, dict[str, int]]:
    """Add the items not yet queued for `task`, in one transaction.

    Returns how many were added, and how many were skipped by the status their job already has
    (queued, leased, done, dead). An item already there is skipped by the insert itself (`ON
    CONFLICT DO NOTHING`), so two enqueues of the same items at once add each item once and
    neither fails.
    """
    insert = sqlite_insert if is_sqlite(engine) else postgresql_insert
    added: set[str] = set()
    with _begin(engine) as conn:
        for start in range(0, len(items), _CHUNK):
            rows = [_new_row(task, i, p, now) for i, p in items[start : start + _CHUNK]]
            statement = (
                insert(scoring_jobs)
                .values(rows)
                .on_conflict_do_nothing(index_elements=["task", "item_id"])
                .returning(scoring_jobs.c.item_id)
            )
            added.update(conn.execute(statement).scalars())
        skipped = [item_id for item_id, _ in items if item_id not in added]
        return len(added), _statuses(conn, task, skipped)


def _statuses(conn: Connection, task: str, item_ids: Sequence[str]) -> dict[str, int]:
    """How many of `item_ids` have a job of `task` in each status."""
    counted: dict[str, int] = {}
    for start in range(0, len(item_ids), _CHUNK):
        query = (
            select(scoring_jobs.c.status, func.count())
            .where(
                scoring_jobs.c.task == task,
                scoring_jobs.c.item_id.in_(item_ids[start : start + _CHUNK]),
            )
            .group_by(scoring_jobs.c.status)
        )
        for status, count in conn.execute(query):
            counted[status] = counted.get(status, 0) + count
    return counted


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
        select(scoring_jobs.c.id, scoring_jobs.c.status, scoring_jobs.c.lease_owner)
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
        picked = conn.execute(pick).all()
        if not picked:
            return []
        ids = [row.id for row in picked]
        lapsed = {row.id for row in picked if row.status == LEASED and row.lease_owner == owner}
        conn.execute(
            update(scoring_jobs)
            .where(scoring_jobs.c.id.in_(ids))
            .values(
                status=LEASED,
                lease_owner=owner,
                # From when the lock was got, not when the claim was asked for: waiting for
                # SQLite's write lock must not eat into the lease.
                lease_expires_at=max(now, datetime.now(UTC)) + lease,
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
        return [
            ClaimedJob(r.id, r.task, r.item_id, r.payload, r.attempts, r.id in lapsed) for r in rows
        ]


def finish(engine: Engine, job_id: int, owner: str, values: dict[str, Any]) -> bool:
    """Write a job's outcome if this worker still holds its lease; False when it does not."""
    return job_id in finish_many(engine, owner, [(job_id, values)])


def finish_many(
    engine: Engine, owner: str, outcomes: Sequence[tuple[int, dict[str, Any]]]
) -> set[int]:
    """Write the outcomes of jobs whose lease this worker still holds, in one transaction;
    returns the ids written. An outcome of a job no longer held is dropped, never written.
    """
    if not outcomes:
        return set()
    ids = [job_id for job_id, _ in outcomes]
    still_held = (scoring_jobs.c.lease_owner == owner, scoring_jobs.c.status == LEASED)
    with _begin(engine) as conn:
        held = _lock_held(conn, ids, still_held)
        # One executemany per shape of outcome (done, retried, dead write different columns).
        by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for job_id, values in outcomes:
            if job_id in held:
                row = {**values, "lease_owner": None, "lease_expires_at": None}
                shape = tuple(sorted(row))
                bound = {f"v_{name}": value for name, value in row.items()}
                by_shape.setdefault(shape, []).append({"job_id": job_id, **bound})
        for columns, rows in by_shape.items():
            statement = (
                update(scoring_jobs)
                .where(scoring_jobs.c.id == bindparam("job_id"), *still_held)
                .values({name: bindparam(f"v_{name}") for name in columns})
            )
            conn.execute(statement, rows)
    return held


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
        _lock_held(conn, ids, held[1:])
        result = conn.execute(update(scoring_jobs).where(*held).values(**values))
        return result.rowcount


def _lock_held(conn: Connection, ids: list[int], still_held: tuple[Any, ...]) -> set[int]:
    """Lock the rows of `ids` still held, in id order, and return their ids. Every writer of
    held rows (finish, renew, release) locks in the same order, so two of them on PostgreSQL
    wait for each other instead of deadlocking."""
    query = (
        select(scoring_jobs.c.id)
        .where(scoring_jobs.c.id.in_(ids), *still_held)
        .order_by(scoring_jobs.c.id)
        .with_for_update()
    )
    return set(conn.execute(query).scalars())


def retry_dead(engine: Engine, task: str, item_ids: Sequence[str] | None, now: datetime) -> int:
    """Put dead jobs of `task` (all, or those of `item_ids`) back in the queue, due now, with
    their attempts reset and their last error kept as `previous: ...`; returns how many."""
    jobs = scoring_jobs.c
    statement = (
        update(scoring_jobs)
        .where(jobs.task == task, jobs.status == DEAD)
        .values(
            status=QUEUED,
            attempts=0,
            not_before=now,
            lease_owner=None,
            lease_expires_at=None,
            finished_at=None,
            error=literal(PREVIOUS, Text) + jobs.error,
            updated_at=now,
        )
    )
    with _begin(engine) as conn:
        if item_ids is None:
            return conn.execute(statement).rowcount
        wanted = sorted(set(item_ids))
        chunks = (wanted[i : i + _CHUNK] for i in range(0, len(wanted), _CHUNK))
        return sum(conn.execute(statement.where(jobs.item_id.in_(c))).rowcount for c in chunks)


def purge(
    engine: Engine, task: str, statuses: Iterable[str], finished_before: datetime | None
) -> dict[str, int]:
    """Delete the finished jobs of `task` in `statuses` (done, dead; never queued or leased),
    only those finished before `finished_before` when given; returns how many, by status."""
    deleted: dict[str, int] = {}
    with _begin(engine) as conn:
        for status in sorted(set(statuses)):
            if status not in FINISHED:
                raise ValueError(f"only finished jobs are purged, not {status!r} ones")
            statement = delete(scoring_jobs).where(
                scoring_jobs.c.task == task, scoring_jobs.c.status == status
            )
            if finished_before is not None:
                statement = statement.where(scoring_jobs.c.finished_at < finished_before)
            deleted[status] = conn.execute(statement).rowcount
    return deleted


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
