"""Reading and writing a test database directly: its URL, its content as text, its rows, the
writes any engine sends, and rows made by hand as an operator would (not managed by reconciler).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event, inspect, select, text

from reconciler.adapters.db.engine import make_engine
from reconciler.adapters.db.tables import reconcile_state, revisions


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@contextmanager
def recording_writes() -> Iterator[list[str]]:
    """Every INSERT/UPDATE/DELETE that any engine in this process sends (the CLI makes its own)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def snapshot(engine: Engine) -> str:
    """The database's content as text; any write shows (PostgreSQL: `xmin` moves on UPDATE)."""
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        assert database
        with sqlite3.connect(database) as conn:
            return "\n".join(conn.iterdump())
    lines = []
    with engine.connect() as conn:
        for table in sorted(inspect(conn).get_table_names()):
            query = text(f'SELECT xmin::text AS x, t::text AS row FROM "{table}" t ORDER BY 2')
            lines += [f"{table} {r.x} {r.row}" for r in conn.execute(query)]
    return "\n".join(lines)


def managed_state(db_url: str) -> dict[str, Any]:
    """The managed content of the database at `db_url`: generation, providers and routes."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            generation = conn.execute(text("SELECT generation FROM reconcile_state")).scalar()
            providers = conn.execute(text("SELECT name, type FROM llm_provider_configs")).all()
            routes = conn.execute(text("SELECT task, provider, model FROM llm_task_routes")).all()
    finally:
        engine.dispose()
    return {
        "generation": generation,
        "providers": sorted(tuple(r) for r in providers),
        "routes": sorted(tuple(r) for r in routes),
    }


def generation(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(reconcile_state.c.generation)).scalar_one())


def revision_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(revisions.c.id)).all())


def rows(engine: Engine, table: Any, key: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return {r._mapping[key]: r for r in conn.execute(select(table))}


def sql(engine: Engine, statement: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement))


def insert_unmanaged_route(engine: Engine, task: str, provider: str, fallbacks: str = "[]") -> None:
    sql(
        engine,
        "INSERT INTO llm_task_routes (task, provider, model, enabled, required, protect, params, "
        "fallbacks, managed_by, created_at, updated_at) VALUES "
        f"('{task}', '{provider}', 'hand-made', true, false, false, '{{}}', '{fallbacks}', "
        "'ops', '2024-01-01 00:00:00', '2024-01-01 00:00:00')",
    )


def insert_unmanaged_provider(engine: Engine, name: str) -> None:
    config = '{"endpoint": {"base_url": "http://10.0.0.9:11434"}}'
    sql(
        engine,
        "INSERT INTO llm_provider_configs (name, type, enabled, protect, config, managed_by, "
        f"created_at, updated_at) VALUES ('{name}', 'ollama', true, false, '{config}', 'ops', "
        "'2024-01-01 00:00:00', '2024-01-01 00:00:00')",
    )
