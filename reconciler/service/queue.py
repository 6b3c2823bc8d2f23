"""Queue operations as `reconciler enqueue`, `jobs`, `jobs retry` and `jobs purge` run them:
each checks that the schema is current, then does its one thing in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from reconciler.adapters.db import queue_store as store
from reconciler.adapters.db import revision

QUEUED, LEASED, DONE, DEAD = store.QUEUED, store.LEASED, store.DONE, store.DEAD
STATUSES = (QUEUED, LEASED, DONE, DEAD)


@dataclass(frozen=True)
class Enqueued:
    """What an enqueue did: how many added, how many skipped by their job's status."""

    added: int
    skipped: dict[str, int]


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


def summary(engine: Engine, dead_limit: int) -> tuple[dict[tuple[str, str], int], list[Any]]:
    """Jobs by (task, status), and the latest `dead_limit` dead jobs."""
    revision.require_current(engine)
    with engine.connect() as conn:
        return store.counts(conn), store.dead_jobs(conn, dead_limit)


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
