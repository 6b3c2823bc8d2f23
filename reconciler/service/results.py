"""Reading the answers of finished jobs, as `reconciler results` and `/api/v1/results` do, and
asking one item through a route without queueing it, as `reconciler try` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine

from reconciler.adapters import secrets
from reconciler.adapters.db import queue_reads as store
from reconciler.adapters.db import revision
from reconciler.adapters.db.queue_store import FINISHED, route_rows
from reconciler.adapters.plugins import load_registry
from reconciler.core.scoring import answer_fields as schema_fields
from reconciler.core.text import scrub_tree
from reconciler.service.ask import Answered, ask_once

__all__ = [
    "FINISHED",
    "Cursor",
    "ResultQuery",
    "answer_fields",
    "page",
    "shown_answer",
    "stream",
    "try_item",
]
ResultQuery = store.ResultQuery
Cursor = store.Cursor


def stream(engine: Engine, query: ResultQuery) -> Iterator[dict[str, Any]]:
    """Every result the query selects, by task and item id, read a page at a time."""
    revision.require_current(engine)
    return store.iter_results(engine, query)


def page(
    engine: Engine, query: ResultQuery, after: Cursor | None, limit: int
) -> list[dict[str, Any]]:
    """One page of results after the cursor `after` (the last page's last (task, item id))."""
    with engine.connect() as conn:
        return store.results_page(conn, query, after, limit)


def answer_fields(engine: Engine, task: str | None) -> list[str]:
    """The answer fields to show as columns: the task's output schema's (the default one's when
    it declares none), or every route's for all tasks."""
    with engine.connect() as conn:
        routes = route_rows(conn)
    if task is not None:
        route = routes.get(task)
        return schema_fields(route["output_schema"] if route else None)
    fields = [f for r in routes.values() for f in schema_fields(r["output_schema"])]
    return list(dict.fromkeys([*schema_fields(None), *fields]))


def try_item(engine: Engine, task: str, payload: dict[str, Any]) -> Answered:
    """One item through the task's route as the worker sends it; nothing is queued or stored.
    Raises `ask.RouteFailure` when no target gave a valid answer."""
    revision.require_current(engine)
    return ask_once(engine, load_registry(), task, payload)


def shown_answer(answered: Answered) -> dict[str, Any]:
    """The answer with every resolved secret value cut out: a model may echo the key back."""
    shown: dict[str, Any] = scrub_tree(answered.result, secrets.known())
    return shown
