"""The scoring queue read for people: its depth, what finished lately, the latest dead jobs,
and the finished jobs' results a keyset page at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select, tuple_

from reconciler.adapters.db.queue_store import DEAD, DONE, FINISHED
from reconciler.adapters.db.tables import scoring_jobs

RESULTS_PAGE = 1000  # rows per query when results are streamed
RESULT_COLUMNS = (
    "id",
    "task",
    "item_id",
    "status",
    "result",
    "provider",
    "model",
    "latency_ms",
    "prompt_tokens",
    "completion_tokens",
    "attempts",
    "finished_at",
    "error",
)


def counts(conn: Connection) -> dict[tuple[str, str], int]:
    """Jobs by (task, status)."""
    query = select(scoring_jobs.c.task, scoring_jobs.c.status, func.count()).group_by(
        scoring_jobs.c.task, scoring_jobs.c.status
    )
    return {(task, status): n for task, status, n in conn.execute(query)}


@dataclass(frozen=True, slots=True)
class Finished:
    """The jobs of one task that finished in a window: how many, and how fast the done ones."""

    task: str
    done: int
    dead: int
    mean_latency_ms: float | None


def finished_since(conn: Connection, since: datetime) -> list[Finished]:
    """Per task, the jobs finished at or after `since`, by task."""
    query = (
        select(
            scoring_jobs.c.task,
            scoring_jobs.c.status,
            func.count(),
            func.avg(scoring_jobs.c.latency_ms),
        )
        .where(scoring_jobs.c.status.in_(FINISHED), scoring_jobs.c.finished_at >= since)
        .group_by(scoring_jobs.c.task, scoring_jobs.c.status)
    )
    counted: dict[str, dict[str, Any]] = {}
    for task, status, count, mean in conn.execute(query):
        row = counted.setdefault(task, {DONE: 0, DEAD: 0, "mean": None})
        row[status] = int(count)
        if status == DONE and mean is not None:
            row["mean"] = float(mean)
    return [
        Finished(task, row[DONE], row[DEAD], row["mean"]) for task, row in sorted(counted.items())
    ]


def dead_jobs(conn: Connection, limit: int) -> list[dict[str, Any]]:
    columns = ("task", "item_id", "attempts", "error", "finished_at")
    query = (
        select(*(scoring_jobs.c[c] for c in columns))
        .where(scoring_jobs.c.status == DEAD)
        .order_by(scoring_jobs.c.finished_at.desc(), scoring_jobs.c.id)
        .limit(limit)
    )
    return [dict(row._mapping) for row in conn.execute(query)]


@dataclass(frozen=True, slots=True)
class ResultQuery:
    """Which finished jobs to read: of one task or all, by status, finished at or after `since`."""

    task: str | None = None
    statuses: tuple[str, ...] = (DONE,)
    since: datetime | None = None


Cursor = tuple[str, str]  # (task, item_id) of the last row read


def results_page(
    conn: Connection, query: ResultQuery, after: Cursor | None, limit: int
) -> list[dict[str, Any]]:
    """Up to `limit` finished jobs after `after`, by (task, item_id): a keyset page.

    The key is the queue's unique (task, item_id), whose index serves every page in order, so
    each page costs its own rows however deep into the results it is. With `query.task`, a
    cursor must be of that task.
    """
    jobs = scoring_jobs.c
    statement = select(*(jobs[c] for c in RESULT_COLUMNS)).where(jobs.status.in_(query.statuses))
    if query.since is not None:
        statement = statement.where(jobs.finished_at >= query.since)
    if query.task is not None:
        statement = statement.where(jobs.task == query.task).order_by(jobs.item_id)
        if after is not None:
            statement = statement.where(jobs.item_id > after[1])
    else:
        statement = statement.order_by(jobs.task, jobs.item_id)
        if after is not None:
            statement = statement.where(tuple_(jobs.task, jobs.item_id) > tuple_(*after))
    return [dict(row._mapping) for row in conn.execute(statement.limit(limit))]


def iter_results(
    engine: Engine, query: ResultQuery, page: int | None = None
) -> Iterator[dict[str, Any]]:
    """Every job `query` selects, read `page` (RESULTS_PAGE) rows at a time, each page in a short
    read of its own: memory stays flat, and no transaction stays open while the caller writes."""
    page = page or RESULTS_PAGE
    after: Cursor | None = None
    while True:
        with engine.connect() as conn:
            rows = results_page(conn, query, after, page)
        yield from rows
        if len(rows) < page:
            return
        after = (rows[-1]["task"], rows[-1]["item_id"])
