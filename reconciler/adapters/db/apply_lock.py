"""The apply lock: one apply at a time per database, and who holds it when one must wait.

PostgreSQL: a namespaced transaction advisory lock, tried until the lock timeout; the holder is
named from `pg_locks`. SQLite: BEGIN IMMEDIATE under a busy timeout; the holder writes an owner
file beside the database, which a waiting apply reads (and ignores when that process is gone).
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from reconciler.adapters.db.engine import SQLITE_BUSY_TIMEOUT_MS, is_sqlite
from reconciler.errors import LockTimeout

APPLY_LOCK_KEY = 0x7265636F6E63696C  # "reconcil", the advisory lock every apply takes
_LOCK_POLL_S = 0.05


@contextmanager
def apply_transaction(engine: Engine, lock_timeout: float) -> Iterator[Connection]:
    """A transaction holding the apply lock; commits on success, rolls back on any error."""
    if is_sqlite(engine):
        with _sqlite_transaction(engine, lock_timeout) as conn:
            yield conn
        return
    with engine.connect() as conn, conn.begin():
        _pg_lock(conn, lock_timeout)
        yield conn


@contextmanager
def _sqlite_transaction(engine: Engine, lock_timeout: float) -> Iterator[Connection]:
    owner = _owner_file(engine)
    with engine.connect() as conn:
        _set_busy_timeout(conn, int(lock_timeout * 1000))
        try:
            conn.execution_options(sqlite_begin="IMMEDIATE").begin()
        except OperationalError as exc:
            if "locked" in str(exc.orig) or "busy" in str(exc.orig):
                raise LockTimeout(_sqlite_holder(owner, lock_timeout)) from None
            raise
        _write_owner(owner)
        try:
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            _clear_owner(owner)
            _set_busy_timeout(conn, SQLITE_BUSY_TIMEOUT_MS)


def _set_busy_timeout(conn: Connection, milliseconds: int) -> None:
    # On the DBAPI connection: a statement through SQLAlchemy would begin a transaction.
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(f"PRAGMA busy_timeout = {milliseconds}")
    cursor.close()


def _pg_lock(conn: Connection, lock_timeout: float) -> None:
    deadline = time.monotonic() + lock_timeout
    # With the lock, in the same round trip: the change counter's triggers leave this
    # transaction's writes alone (migration 0007).
    query = text(
        "SELECT pg_try_advisory_xact_lock(:key), set_config('reconciler.applying', 'on', true)"
    )
    while not conn.execute(query, {"key": APPLY_LOCK_KEY}).one()[0]:
        if time.monotonic() >= deadline:
            raise LockTimeout(_pg_holder(conn, lock_timeout))
        time.sleep(_LOCK_POLL_S)


def _pg_holder(conn: Connection, lock_timeout: float) -> str:
    holder = conn.execute(
        text(
            "SELECT a.pid, a.application_name, a.client_addr, a.xact_start "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted "
            # Advisory locks are per database; pg_locks lists the whole server's.
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND l.classid = :hi AND l.objid = :lo AND l.objsubid = 1"
        ),
        {"hi": APPLY_LOCK_KEY >> 32, "lo": APPLY_LOCK_KEY & 0xFFFFFFFF},
    ).first()
    who = "another process"
    if holder is not None:
        name = holder.application_name or "a client"
        who = f"{name} (server pid {holder.pid}, from {holder.client_addr or 'local socket'}, "
        who += f"transaction started {holder.xact_start:%Y-%m-%d %H:%M:%S %Z})"
    return f"the apply lock is held by {who}; gave up after {lock_timeout:g}s (--lock-timeout)"


def _owner_file(engine: Engine) -> Path | None:
    database = engine.url.database
    return Path(f"{database}.apply-owner") if database and database != ":memory:" else None


def describe_self() -> str:
    return f"reconciler on {socket.gethostname()} pid {os.getpid()}"


def _write_owner(owner: Path | None) -> None:
    if owner is not None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        owner.write_text(f"{describe_self()} since {stamp}\n", encoding="utf-8")


def _clear_owner(owner: Path | None) -> None:
    if owner is not None:
        owner.unlink(missing_ok=True)


def _sqlite_holder(owner: Path | None, lock_timeout: float) -> str:
    who = "another writer"
    if owner is not None:
        with suppress(OSError):
            recorded = owner.read_text(encoding="utf-8").strip()
            if recorded and not _owner_is_gone(recorded):
                who = recorded
    return f"the database is locked by {who}; gave up after {lock_timeout:g}s (--lock-timeout)"


def _owner_is_gone(recorded: str) -> bool:
    """A killed apply leaves its owner file behind; it names a process of this host that is gone."""
    match = re.match(r"reconciler on (\S+) pid (\d+) ", recorded)
    if match is None or match[1] != socket.gethostname():
        return False
    try:
        os.kill(int(match[2]), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, but another user's
        return False
    return False
