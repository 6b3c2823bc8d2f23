"""Creating engines: SQLite tuned for one writer and many readers, PostgreSQL through psycopg 3."""

from __future__ import annotations

import os
import socket
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry

SQLITE_BUSY_TIMEOUT_MS = 5000


class UnsupportedDatabase(ValueError):
    """The URL names a database engine reconciler does not support."""


class DriverMissing(UnsupportedDatabase):
    """The URL names a supported engine whose driver is not installed."""


def normalize_url(url: str) -> URL:
    """`postgresql://` means psycopg 3 here; `sqlite://` stays as it is."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername in ("postgresql+psycopg", "sqlite", "sqlite+pysqlite"):
        return parsed
    raise UnsupportedDatabase(
        f"unsupported database {parsed.drivername!r}; use sqlite:///FILE or postgresql://..."
    )


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`. SQLite: WAL, a busy timeout, foreign keys, explicit BEGINs."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, **kwargs)
        _tune_sqlite(engine)
        return engine
    try:
        import psycopg  # noqa: F401  (SQLAlchemy imports it next; a missing libpq fails here too)
    except ImportError as exc:
        raise DriverMissing(
            f"PostgreSQL needs the psycopg 3 driver, which cannot be imported ({exc}); install "
            "it with `pip install 'reconciler[postgres]'`"
        ) from None
    # The application name shows in pg_stat_activity, so a lock holder can be named.
    connect_args = {"application_name": f"reconciler {socket.gethostname()} pid {os.getpid()}"}
    return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args, **kwargs)


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when a transaction begins.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # `sqlite_begin="IMMEDIATE"` takes the write lock at BEGIN, so a re-plan inside the
        # transaction sees the state it will write over.
        mode = connection.get_execution_options().get("sqlite_begin", "")
        connection.exec_driver_sql(f"BEGIN {mode}".strip())


def first_line(exc: DBAPIError) -> str:
    """The driver's own message, first line only: what a person needs, no SQL, no parameters."""
    text = str(exc.orig).strip() if exc.orig is not None else ""
    return text.splitlines()[0] if text else type(exc).__name__
