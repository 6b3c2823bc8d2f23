"""Faults around apply: concurrent applies, a held lock, crashes and errors inside the transaction.

Faults are injected by tests/fault_apply.py, a test-only entry point that installs a statement
listener and then runs the real command line; the reconciler package holds no test hooks. What the
tests compare, and how they fork applies: tests/fault_states.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from reconciler.adapters.db import migrate
from reconciler.adapters.db.engine import is_sqlite, make_engine
from reconciler.adapters.db.tables import revisions
from tests.builders import AFTER_CONFIG, BEFORE_CONFIG, many_routes
from tests.conftest import Result, run_reconciler
from tests.db_inspect import url_of
from tests.fault_apply import (
    Apply,
    FaultHook,
    Forker,
    lock_held_by_this_test,
    wait_lock_free,
)
from tests.fault_states import (
    WRITES,
    ConsistencyReader,
    Scene,
    assert_clean,
    cli_apply,
    dump,
    engine_url_with,
    essence,
    expected_routes,
    route_contents,
    seed_before,
    start_apply,
)

pytestmark = pytest.mark.timeout(90)


# --- the database under test, a reference, a forker ------------------------------------------


@pytest.fixture
def reference(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """A second, migrated database of the same engine, to apply the expected outcome on."""
    if db_url.startswith("sqlite"):
        engine = make_engine(f"sqlite:///{tmp_path / 'reference.db'}")
        migrate.upgrade(engine)
        yield engine
        engine.dispose()
        return
    admin: Engine = request.getfixturevalue("postgres_admin")
    name = f"reconciler_ref_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(engine_url_with(db_url, name))
    migrate.upgrade(engine)
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def scene(engine: Engine, reference: Engine, write_config: Callable[..., Path]) -> Scene:
    before_dir = write_config(BEFORE_CONFIG, "before")
    after_dir = write_config(AFTER_CONFIG, "after")
    for database in (engine, reference):
        seed_before(database, before_dir)
    assert cli_apply(reference, after_dir) == 0
    return Scene(before_dir, after_dir, dump(engine), essence(dump(reference)))


@pytest.fixture(scope="module")
def forker() -> Iterator[Forker]:
    server = Forker()
    yield server
    server.close()


# --- 1. concurrent applies -------------------------------------------------------------------


def applied_documents(runs: dict[str, Apply]) -> dict[str, dict[str, Any]]:
    """Wait for every run; each must succeed cleanly and print its JSON result."""
    documents = {}
    for name, run in runs.items():
        result = run.finish()
        assert result.code == 0, result.output
        assert_clean(result)
        documents[name] = json.loads(result.stdout)
        assert documents[name]["applied"] is True
    return documents


def assert_last_committer_won(
    engine: Engine, runs: dict[str, Apply], documents: dict[str, dict[str, Any]]
) -> str:
    """Generation 1 created everything, generation 2 re-planned over it; the DB holds gen 2."""
    first, last = sorted(documents, key=lambda name: documents[name]["generation"])
    assert [documents[first]["generation"], documents[last]["generation"]] == [1, 2]
    assert documents[first]["summary"]["create"] == 301
    # Planned inside the lock against the first one's commit: 300 updates, not 301 creates.
    assert documents[last]["summary"] == {
        "create": 0,
        "update": 300,
        "delete": 0,
        "adopt": 0,
        "unchanged": 1,
    }
    assert route_contents(engine) == expected_routes(last)
    assert route_contents(engine) != expected_routes(first)
    with engine.connect() as conn:
        recorded = conn.execute(
            select(revisions.c.generation, revisions.c.pid).order_by(revisions.c.generation)
        ).all()
    assert [tuple(r) for r in recorded] == [(1, runs[first].pid), (2, runs[last].pid)]
    return last


def test_two_applies_started_together_leave_the_state_of_the_one_that_committed_last(
    forker: Forker,
    engine: Engine,
    write_config: Callable[..., Path],
    cli: Callable[..., Result],
) -> None:
    configs = {name: write_config(many_routes(name), name) for name in ("alpha", "beta")}
    with ConsistencyReader(url_of(engine), per_apply=300):
        runs = {
            name: start_apply(forker, engine, config, "--format", "json")
            for name, config in configs.items()
        }
        documents = applied_documents(runs)
    last = assert_last_committer_won(engine, runs, documents)
    url = url_of(engine)
    plan = cli("--database-url", url, "--config", configs[last], "plan", "--detailed-exitcode")
    assert plan.code == 0, plan.output


def test_an_apply_that_waited_for_the_lock_replans_and_its_state_wins(
    forker: Forker, engine: Engine, write_config: Callable[..., Path]
) -> None:
    alpha = write_config(many_routes("alpha"), "alpha")
    beta = write_config(many_routes("beta"), "beta")
    with ConsistencyReader(url_of(engine), per_apply=300) as reader:
        holder = start_apply(forker, engine, alpha, "--format", "json", fault="pause:commit")
        holder.wait_for_pause()
        # Everything written, nothing committed: a reader sees the old generation and no rows.
        assert reader.read() == (0, 0, 0, 0)
        waiter = start_apply(forker, engine, beta, "--format", "json")
        lock_statement = (
            "BEGIN IMMEDIATE" if is_sqlite(engine) else "SELECT pg_try_advisory_xact_lock"
        )
        deadline = time.monotonic() + 30
        while not any(s.startswith(lock_statement) for s in waiter.statements()):
            assert waiter.running() and time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.3)
        assert waiter.running(), "the second apply did not wait for the lock"
        holder.release()
        runs = {"alpha": holder, "beta": waiter}
        documents = applied_documents(runs)
        assert reader.read() == (2, 300, 1, 0)
    assert assert_last_committer_won(engine, runs, documents) == "beta"


# --- 2. a held lock --------------------------------------------------------------------------


def test_apply_gives_up_after_the_lock_timeout_naming_the_holder_and_writes_nothing(
    forker: Forker, engine: Engine, write_config: Callable[..., Path]
) -> None:
    alpha = write_config(many_routes("alpha", 3), "alpha")
    beta = write_config(many_routes("beta", 3), "beta")
    before = dump(engine)
    holder = start_apply(forker, engine, alpha, fault="pause:commit")
    holder.wait_for_pause()
    started = time.monotonic()
    result = start_apply(forker, engine, beta, "--lock-timeout", "1").finish()
    elapsed = time.monotonic() - started
    assert result.code == 1, result.output
    assert_clean(result)
    assert re.search(rf"\bpid {holder.pid}\b", result.stderr), result.stderr
    assert socket.gethostname() in result.stderr, result.stderr
    assert "--lock-timeout" in result.stderr
    # The holder never lets go until released below: giving up at all is the proof. The bound
    # only says it was the timeout, not the test's own, with room for a loaded machine.
    assert elapsed < 10, f"gave up after {elapsed:.1f} s, asked to after 1 s"
    assert dump(engine) == before
    holder.release()
    assert holder.finish().code == 0
    assert route_contents(engine) == expected_routes("alpha", 3)
    assert len(dump(engine)["revisions"]) == 1


def test_a_lock_timeout_never_names_a_killed_apply_as_the_holder(
    forker: Forker, engine: Engine, write_config: Callable[..., Path]
) -> None:
    config = write_config(many_routes("alpha", 3), "alpha")
    killed = start_apply(forker, engine, config, fault="kill:commit")
    assert killed.finish().code == -signal.SIGKILL
    wait_lock_free(engine)
    with lock_held_by_this_test(engine):
        result = start_apply(forker, engine, config, "--lock-timeout", "1").finish()
    assert result.code == 1, result.output
    assert_clean(result)
    assert not re.search(rf"\bpid {killed.pid}\b", result.stderr), result.stderr
    if not is_sqlite(engine):  # the server knows every holder; SQLite only what it was told
        assert re.search(rf"\bpid {os.getpid()}\b", result.stderr), result.stderr


# --- 3. errors and crashes inside the transaction --------------------------------------------


def test_an_error_after_any_statement_of_apply_rolls_back_everything(
    engine: Engine, scene: Scene, cli: Callable[..., Result]
) -> None:
    before, after_dir, url = scene.before, scene.after_dir, url_of(engine)
    for k in range(1, 200):
        hook = FaultHook(f"raise:{k}")
        hook.install()
        try:
            result = cli("--database-url", url, "--config", after_dir, "apply")
        finally:
            hook.remove()
        if not hook.fired:
            break
        assert result.code == 1, (k, result.output)
        assert f"injected fault after statement {k}" in result.stderr, result.output
        assert_clean(result)
        assert dump(engine) == before, f"error after statement {k}: {hook.statements[-1]}"
    assert result.code == 0, result.output
    assert len(hook.statements) == k - 1, "every statement of the apply was faulted once"
    assert sum(s.startswith(WRITES) for s in hook.statements) >= 10
    assert essence(dump(engine)) == scene.after
    plan = cli("--database-url", url, "--config", after_dir, "plan", "--detailed-exitcode")
    assert plan.code == 0, plan.output


def test_a_kill_after_any_statement_of_apply_leaves_the_before_state_and_a_rerun_converges(
    forker: Forker, engine: Engine, scene: Scene, cli: Callable[..., Result]
) -> None:
    before, after_dir, url = scene.before, scene.after_dir, url_of(engine)
    at_commit = start_apply(forker, engine, after_dir, fault="kill:commit")
    assert at_commit.finish().code == -signal.SIGKILL
    statements = at_commit.statements()
    assert sum(s.startswith(WRITES) for s in statements) >= 10, statements
    assert dump(engine) == before, "killed right before COMMIT"
    for k in range(1, len(statements) + 1):
        wait_lock_free(engine)
        run = start_apply(forker, engine, after_dir, fault=f"kill:{k}")
        result = run.finish()
        assert result.code == -signal.SIGKILL, (k, result.output)
        assert run.statements() == statements[:k]
        assert dump(engine) == before, f"killed after statement {k}: {statements[k - 1]}"
    wait_lock_free(engine)
    rerun = run_reconciler("--database-url", url, "--config", after_dir, "apply")
    assert rerun.code == 0, rerun.output
    assert_clean(rerun)
    assert essence(dump(engine)) == scene.after
    plan = cli("--database-url", url, "--config", after_dir, "plan", "--detailed-exitcode")
    assert plan.code == 0, plan.output
