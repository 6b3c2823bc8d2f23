"""Alembic environment: takes a connection from the caller, else the URL from settings.

Migrations run under a lock (a PostgreSQL advisory lock; SQLite BEGIN IMMEDIATE), so several
processes upgrading the same fresh database at once all succeed, one after the other. `alembic
check` compares the application's tables and the migrations' own bookkeeping
(`schema_table_origins`) alike.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from reconciler.adapters.db.engine import make_engine
from reconciler.adapters.db.migrate import bookkeeping
from reconciler.adapters.db.tables import metadata
from reconciler.settings import Settings

MIGRATION_LOCK_KEY = 0x7265636F6E6D6967  # "reconmig"

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=[metadata, bookkeeping],
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or Settings.load().database_url
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn.execution_options(sqlite_begin="IMMEDIATE"))
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them against a database")
run_migrations_online()
