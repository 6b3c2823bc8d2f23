"""Which daemon reconciles: one leader per database.

PostgreSQL: a session advisory lock held on a dedicated connection. The server releases it when
that connection ends, so a leader that dies (even by SIGKILL) hands over as soon as the server
notices the closed socket; a leader whose connection fails steps down at its next check.
SQLite: an exclusive `flock` on a sidecar file beside the database, released by the kernel when
the process ends; a second daemon on the same file does not reconcile, and says who does.
"""

from __future__ import annotations

import fcntl
import logging
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from reconciler.adapters.db.apply_lock import describe_self
from reconciler.adapters.db.engine import first_line, is_sqlite

log = logging.getLogger(__name__)
LEADER_LOCK_KEY = 0x7265636F6C656164  # "recolead"


class Leadership(Protocol):
    def try_acquire(self) -> bool:
        """Become leader if nobody is; True when this process is the leader."""
        ...

    def still_held(self) -> bool:
        """Check that leadership was not lost (the connection is alive)."""
        ...

    def holder(self) -> str:
        """Who leads, as a person would want to read it."""
        ...

    def release(self) -> None: ...


def leadership_for(engine: Engine) -> Leadership:
    if is_sqlite(engine):
        return SqliteLeadership(engine)
    return PostgresLeadership(engine)


def _me() -> str:
    return f"{describe_self()} since {datetime.now(UTC):%Y-%m-%d %H:%M:%S UTC}"


class PostgresLeadership:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._conn: Connection | None = None
        self._held = False

    def try_acquire(self) -> bool:
        if self._held:
            return self.still_held()
        try:
            if self._conn is None:
                self._conn = self._engine.connect()
            query = text("SELECT pg_try_advisory_lock(:key)")
            self._held = bool(self._conn.execute(query, {"key": LEADER_LOCK_KEY}).scalar_one())
        except DBAPIError as exc:
            log.warning("leader election: database unavailable (%s)", first_line(exc))
            self._drop()
        return self._held

    def still_held(self) -> bool:
        if not self._held or self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1"))
        except DBAPIError as exc:
            log.warning("lost the leader connection (%s); stepping down", first_line(exc))
            self._drop()
            return False
        return True

    def holder(self) -> str:
        if self._held:
            return "this process"
        try:
            with self._engine.connect() as conn:
                row = conn.execute(
                    text(
                        "SELECT a.application_name, a.client_addr, a.backend_start "
                        "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                        "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
                        "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                        "AND l.classid = :hi AND l.objid = :lo AND l.objsubid = 1"
                    ),
                    {"hi": LEADER_LOCK_KEY >> 32, "lo": LEADER_LOCK_KEY & 0xFFFFFFFF},
                ).first()
        except DBAPIError:
            return "unknown (database unavailable)"
        if row is None:
            return "nobody"
        return f"{row.application_name or 'a client'} from {row.client_addr or 'local socket'}"

    def release(self) -> None:
        if self._conn is not None and self._held:
            with suppress(DBAPIError):
                query = text("SELECT pg_advisory_unlock(:key)")
                self._conn.execute(query, {"key": LEADER_LOCK_KEY})
        self._drop()

    def _drop(self) -> None:
        self._held = False
        if self._conn is not None:
            with suppress(Exception):
                self._conn.invalidate()
                self._conn.close()
            self._conn = None


class SqliteLeadership:
    def __init__(self, engine: Engine) -> None:
        database = engine.url.database
        memory = not database or database == ":memory:"
        self._path = None if memory else Path(f"{database}.daemon-lock")
        self._file: IO[str] | None = None

    def try_acquire(self) -> bool:
        if self._file is not None or self._path is None:
            return True
        handle = self._path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(_me() + "\n")
        handle.flush()
        self._file = handle
        return True

    def still_held(self) -> bool:
        return self._file is not None or self._path is None

    def holder(self) -> str:
        if self.still_held():
            return "this process"
        try:
            assert self._path is not None
            return self._path.read_text(encoding="utf-8").strip() or "another daemon"
        except OSError:
            return "another daemon"

    def release(self) -> None:
        if self._file is not None:
            with suppress(OSError):
                self._file.truncate(0)
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
