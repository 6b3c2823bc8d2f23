"""A signal while `reconciler run` applies: SIGTERM or SIGINT mid-apply exits 0 promptly and
leaves the database as it was before or after, never between, with no lock left behind.

Each test starts a real daemon (`python -m reconciler ... run`), makes it apply, and signals it.
"""

from __future__ import annotations

import fcntl
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, text

from reconciler.adapters.db.apply_lock import APPLY_LOCK_KEY
from reconciler.adapters.db.engine import make_engine
from tests.builders import numbered_route_rows, numbered_routes
from tests.conftest import Result, run_reconciler
from tests.daemon_harness import Daemon, Daemons
from tests.db_inspect import managed_state


@contextmanager
def postgres_apply_lock(db_url: str) -> Iterator[Connection]:
    """Hold the apply lock (as a long CLI apply would) until the block ends."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn, conn.begin():
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": APPLY_LOCK_KEY})
            yield conn
    finally:
        engine.dispose()


def waiting_for_apply_lock(engine: Engine, pid: int) -> bool:
    """The daemon `pid` is inside an apply, polling for the lock."""
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE :name "
                "AND query LIKE '%pg_try_advisory_xact_lock%' AND state LIKE 'idle in trans%'"
            ),
            {"name": f"% pid {pid}"},
        ).scalar_one()
    return bool(found)


def applying(engine: Engine, pid: int) -> bool:
    """The daemon `pid` holds the apply lock and has begun to write."""
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :hi "
                "AND l.objid = :lo AND a.application_name LIKE :name "
                "AND a.backend_xid IS NOT NULL"
            ),
            {
                "hi": APPLY_LOCK_KEY >> 32,
                "lo": APPLY_LOCK_KEY & 0xFFFFFFFF,
                "name": f"% pid {pid}",
            },
        ).scalar_one()
    return bool(found)


def flock_is_free(path: Path) -> bool:
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return True


def assert_clean_exit(daemon: Daemon, code: int, took: float, what: str) -> None:
    """The signalled daemon exited 0 within 10 s, without a traceback."""
    print(f"exit {code} {took:.2f}s {what}")
    assert code == 0, daemon.log()
    assert took < 10
    assert "Traceback" not in daemon.log()


def apply_at_once(url: str, directory: Path) -> Result:
    """`reconciler apply --lock-timeout 0`: an apply lock the signalled daemon left behind fails
    it at once."""
    return run_reconciler(
        "--database-url", url, "--config", directory, "apply", "--lock-timeout", "0"
    )


def test_sigterm_while_an_apply_waits_for_the_lock_exits_0_and_writes_nothing(
    start_daemon: Daemons,
    postgres_url: str,
) -> None:
    scene = start_daemon.on_fake(postgres_url, routes=numbered_routes())
    daemon, directory = scene.daemon, scene.directory
    before = managed_state(postgres_url)
    watcher = make_engine(postgres_url)
    try:
        with postgres_apply_lock(postgres_url):
            (directory / "routes.yaml").write_text(numbered_routes("qwen2.5:7b", 3), "utf-8")
            daemon.wait_for(
                lambda: waiting_for_apply_lock(watcher, daemon.proc.pid),
                what="the daemon's apply to wait for the lock",
            )
            code, took = daemon.stop_timed(signal.SIGTERM)
            assert managed_state(postgres_url) == before
    finally:
        watcher.dispose()
    assert_clean_exit(daemon, code, took, "after SIGTERM mid-apply")
    result = apply_at_once(postgres_url, directory)
    assert result.code == 0, result.output
    after = managed_state(postgres_url)
    assert after["generation"] == 2
    assert after["routes"] == numbered_route_rows("qwen2.5:7b", 3)


def test_sigterm_during_a_5000_route_apply_leaves_the_before_or_the_after_state(
    start_daemon: Daemons,
    postgres_url: str,
) -> None:
    scene = start_daemon.on_fake(postgres_url, routes=numbered_routes())
    daemon, directory = scene.daemon, scene.directory
    before = managed_state(postgres_url)
    watcher = make_engine(postgres_url)
    try:
        (directory / "routes.yaml").write_text(numbered_routes("qwen2.5:7b", 5000), "utf-8")
        daemon.wait_for(
            lambda: applying(watcher, daemon.proc.pid), what="the daemon to start writing"
        )
        code, took = daemon.stop_timed(signal.SIGTERM)
    finally:
        watcher.dispose()
    state = managed_state(postgres_url)
    assert_clean_exit(daemon, code, took, f"; generation after the signal: {state['generation']}")
    if state["generation"] == before["generation"]:
        assert state == before
    else:
        assert state["generation"] == 2
        assert state["routes"] == numbered_route_rows("qwen2.5:7b", 5000)
    result = apply_at_once(postgres_url, directory)
    assert result.code == 0, result.output
    assert managed_state(postgres_url)["routes"] == numbered_route_rows("qwen2.5:7b", 5000)


def test_sigint_while_a_sqlite_apply_waits_exits_0_and_releases_the_daemon_lock(
    start_daemon: Daemons,
    sqlite_url: str,
    tmp_path: Path,
) -> None:
    scene = start_daemon.on_fake(sqlite_url, routes=numbered_routes())
    daemon, directory = scene.daemon, scene.directory
    database = tmp_path / "reconciler.db"
    daemon_lock = Path(f"{database}.daemon-lock")
    assert not flock_is_free(daemon_lock)
    before = managed_state(sqlite_url)
    writer = sqlite3.connect(database, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # a writer that holds the database
        (directory / "routes.yaml").write_text(numbered_routes("qwen2.5:7b", 3), "utf-8")
        time.sleep(1.0)  # the edit is seen, validated, and the apply waits for the writer
        code, took = daemon.stop_timed(signal.SIGINT)
        writer.execute("ROLLBACK")
    finally:
        writer.close()
    assert_clean_exit(daemon, code, took, "after SIGINT mid-apply")
    assert managed_state(sqlite_url) == before
    assert flock_is_free(daemon_lock)
    started = time.monotonic()
    result = apply_at_once(sqlite_url, directory)
    assert result.code == 0, result.output
    assert time.monotonic() - started < 10
    assert managed_state(sqlite_url)["routes"] == numbered_route_rows("qwen2.5:7b", 3)
