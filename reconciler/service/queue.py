"""Queue operations as `reconciler enqueue`, `jobs`, `jobs retry` and `jobs purge` run them:
each checks that the schema is current, then does its one thing in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from reconciler.adapters.db import queue_reads, revision
from reconciler.adapters.db import queue_store as store

QUEUED, LEASED, DONE, DEAD = store.QUEUED, store.LEASED, store.DONE, store.DEAD
STATUSES = (QUEUED, LEASED, DONE, DEAD)


@dataclass(frozen=True)
class Enqueued:
    """What an enqueue did: how many added, how many skipped by their job's status."""

    added: int
    skipped: dict[str, int]


@dataclass(frozen=True)
class TaskQueue:
    """One task's jobs: how many in each status, and what finished in the recent window."""

    task: str
    statuses: dict[str, int]
    done_recently: int = 0
    dead_recently: int = 0
    mean_latency_ms: float | None = None


@dataclass(frozen=True)
class QueueView:
    """The scoring queue as the status page shows it, read every few seconds."""

    at: datetime
    window_s: float
    tasks: list[TaskQueue]
    dead: list[dict[str, Any]]  # the latest dead jobs: task, item_id, attempts, error


def overview(engine: Engine, window_s: float, dead_limit: int) -> QueueView:
    """The queue's depth by task and status, what finished in the last `window_s`, the latest
    `dead_limit` dead jobs: one short read, for the metrics and the status page."""
    at = datetime.now(UTC)
    with engine.connect() as conn:
        counted = queue_reads.counts(conn)
        since = at - timedelta(seconds=window_s)
        recent = {f.task: f for f in queue_reads.finished_since(conn, since)}
        dead = queue_reads.dead_jobs(conn, dead_limit)
    statuses = by_task(counted)
    tasks = []
    for task in sorted(statuses.keys() | recent.keys()):
        finished = recent.get(task)
        tasks.append(
            TaskQueue(
                task,
                statuses.get(task, {}),
                finished.done if finished else 0,
                finished.dead if finished else 0,
                finished.mean_latency_ms if finished else None,
            )
        )
    return QueueView(at, window_s, tasks, dead)


def by_task(counted: dict[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    """Job counts by (task, status) as {task: {status: count}}."""
    tasks: dict[str, dict[str, int]] = {}
    for (task, status), n in counted.items():
        tasks.setdefault(task, {})[status] = n
    return tasks


def routed_tasks(engine: Engine) -> list[str]:
    """The tasks that have a route, sorted."""
    revision.require_current(engine)
    with engine.connect() as conn:
        return sorted(store.route_rows(conn))


def enqueue(engine: Engine, task: str, items: Sequence[tuple[str, dict[str, Any]]]) -> Enqueued:
    """Add the items the task has no job for yet."""
    revision.require_current(engine)
    added, skipped = store.enqueue(engine, task, items, datetime.now(UTC))
    return Enqueued(added, skipped)


def summary(
    engine: Engine, dead_limit: int, *, check_schema: bool = True
) -> tuple[dict[tuple[str, str], int], list[Any]]:
    """Jobs by (task, status), and the latest `dead_limit` dead jobs (`check_schema` as for
    `state.revisions`)."""
    if check_schema:
        revision.require_current(engine)
    with engine.connect() as conn:
        return queue_reads.counts(conn), queue_reads.dead_jobs(conn, dead_limit)


def retry(engine: Engine, task: str, item_ids: Sequence[str] | None) -> int:
    """Put the task's dead jobs (all, or those of `item_ids`) back in the queue; how many."""
    revision.require_current(engine)
    return store.retry_dead(engine, task, item_ids, datetime.now(UTC))


def purge(
    engine: Engine, task: str, statuses: Sequence[str], before: datetime | None
) -> dict[str, int]:
    """Delete the task's finished jobs in `statuses` (finished before `before`); by status."""
    revision.require_current(engine)
    return store.purge(engine, task, statuses, before)
