"""Faults around apply: concurrent applies, a held lock, crashes and errors inside the transaction.

Faults are injected by tests/fault_apply.py, a test-only entry point that installs a statement
listener and then runs the real command line; the reconciler package holds no test hooks.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Table, select, text
from sqlalchemy.engine import make_url

from reconciler.adapters.db import migrate
from reconciler.adapters.db.engine import is_sqlite, make_engine
from reconciler.adapters.db.tables import providers, reconcile_state, revisions, routes
from reconciler.cli import main
from tests.conftest import Result, run_reconciler
from tests.fault_apply import (
    Apply,
    FaultHook,
    Forker,
    Outcome,
    lock_held_by_this_test,
    wait_lock_free,
)

TABLES: dict[str, tuple[Table, str]] = {
    "providers": (providers, "name"),
    "routes": (routes, "task"),
    "state": (reconcile_state, "id"),
    "revisions": (revisions, "generation"),
}
VOLATILE = {"id", "created_at", "updated_at", "applied_at", "pid"}
ROUTE_CONTENT = ("provider", "model", "enabled", "required", "protect", "params", "fallbacks")
WRITES = ("INSERT", "UPDATE", "DELETE")
State = dict[str, list[dict[str, Any]]]

pytestmark = pytest.mark.timeout(90)


# --- configs ---------------------------------------------------------------------------------


def _provider(name: str, kind: str, url: str) -> str:
    return f"  {name}:\n    type: {kind}\n    endpoint:\n      base_url: {url}\n"


def _route(task: str, provider: str, model: str) -> str:
    return f"  {task}:\n    provider: {provider}\n    model: {model}\n"


def many_routes(model: str, count: int = 300) -> dict[str, str]:
    """One provider and `count` routes whose models all carry `model`."""
    body = "".join(_route(f"task-{i:03d}", "local", f"{model}-{i}") for i in range(count))
    text_ = "version: 1\nproviders:\n" + _provider("local", "ollama", "http://127.0.0.1:11434")
    return {"routes.yaml": text_ + "routes:\n" + body}


def expected_routes(model: str, count: int = 300) -> dict[str, tuple[Any, ...]]:
    return {
        f"task-{i:03d}": ("local", f"{model}-{i}", True, False, False, {}, [], "config")
        for i in range(count)
    }


BEFORE_CONFIG = {
    "providers.yaml": "version: 1\nproviders:\n"
    + _provider("keep", "ollama", "http://127.0.0.1:11434")
    + _provider("old", "ollama", "http://127.0.0.1:11435")
    + _provider("stable", "openai_compatible", "http://127.0.0.1:8000/v1"),
    "routes.yaml": "version: 1\nroutes:\n"
    + _route("t-keep", "keep", "m1")
    + _route("t-old", "old", "m1")
    + "".join(_route(f"t-stable-{i}", "stable", "m1") for i in range(4)),
}
# Every kind of write: create, adopt, update and delete, of providers and of routes.
AFTER_CONFIG = {
    "providers.yaml": "version: 1\nproviders:\n"
    + _provider("keep", "ollama", "http://127.0.0.1:11436")
    + _provider("new", "ollama", "http://127.0.0.1:11437")
    + _provider("stable", "openai_compatible", "http://127.0.0.1:8000/v1")
    + _provider("legacy", "ollama", "http://127.0.0.1:11438"),
    "routes.yaml": "version: 1\nroutes:\n"
    + _route("t-keep", "keep", "m2")
    + _route("t-new", "new", "m1")
    + _route("t-legacy", "legacy", "m3")
    + "".join(_route(f"t-stable-{i}", "stable", "m1") for i in range(4)),
}


# --- databases and states --------------------------------------------------------------------


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def dump(engine: Engine) -> State:
    """Every row of the provider, route, state and revision tables, in key order."""
    with engine.connect() as conn:
        return {
            name: [dict(r._mapping) for r in conn.execute(select(t).order_by(t.c[key]))]
            for name, (t, key) in TABLES.items()
        }


def essence(state: State) -> State:
    """A state without what differs between equal applies: ids, timestamps, the pid."""
    return {
        name: [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]
        for name, rows in state.items()
    }


def route_contents(engine: Engine) -> dict[str, tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(select(routes)).all()
    return {r.task: (*(getattr(r, c) for c in ROUTE_CONTENT), r.managed_by) for r in rows}


def cli_apply(engine: Engine, config: Path, *extra: str) -> int:
    return main(["--database-url", url_of(engine), "--config", str(config), "apply", *extra])


def seed_before(engine: Engine, config: Path) -> None:
    """Apply BEFORE_CONFIG, then add an unmanaged provider and route for AFTER_CONFIG to adopt."""
    assert cli_apply(engine, config) == 0
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    stamps = {"managed_by": "legacy", "created_at": moment, "updated_at": moment}
    with engine.begin() as conn:
        conn.execute(
            providers.insert().values(
                name="legacy",
                type="ollama",
                enabled=True,
                protect=False,
                config={"endpoint": {"base_url": "http://127.0.0.1:11434"}},
                **stamps,
            )
        )
        conn.execute(
            routes.insert().values(
                task="t-legacy",
                provider="legacy",
                model="old-model",
                enabled=True,
                required=False,
                protect=False,
                params={},
                fallbacks=[],
                **stamps,
            )
        )


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


def engine_url_with(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


@dataclass(frozen=True)
class Scene:
    """BEFORE_CONFIG applied plus rows to adopt; what a clean apply of AFTER_CONFIG leaves."""

    before_dir: Path
    after_dir: Path
    before: State  # the database under test, exactly
    after: State  # the essence of the reference database after a clean apply of AFTER_CONFIG


@pytest.fixture
def scene(engine: Engine, reference: Engine, write_config: Callable[..., Path]) -> Scene:
    before_dir = write_config(BEFORE_CONFIG, "before")
    after_dir = write_config(AFTER_CONFIG, "after")
    for database in (engine, reference):
        seed_before(database, before_dir)
    assert cli_apply(reference, after_dir) == 0
    return Scene(before_dir, after_dir, dump(engine), essence(dump(reference)))


# --- processes -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def forker() -> Iterator[Forker]:
    server = Forker()
    yield server
    server.close()


def start_apply(
    forker: Forker, engine: Engine, config: Path, *extra: str, fault: str = ""
) -> Apply:
    """Fork `reconciler --database-url URL --config DIR apply EXTRA` with `fault`."""
    return forker.start(
        ["--database-url", url_of(engine), "--config", str(config), "apply", *extra],
        config.parent / f"run-{uuid.uuid4().hex[:8]}",
        fault,
    )


def assert_clean(result: Result | Outcome) -> None:
    """No traceback and no raw driver error in what a run printed."""
    assert "Traceback" not in result.output, result.output
    assert "OperationalError" not in result.output, result.output
    assert not re.search(r"database is locked(?! by )", result.output), result.output


class ConsistencyReader:
    """Polls, in one statement each time, whether a reader sees a generation without its rows.

    Every apply in these tests writes all `per_apply` routes, so a reader that sees generation
    g >= 1 must see exactly one revision g, `per_apply` routes of generation g, and no route of a
    later generation.
    """

    QUERY = text(
        "SELECT s.generation, "
        "(SELECT count(*) FROM llm_task_routes r WHERE r.generation = s.generation), "
        "(SELECT count(*) FROM reconcile_revisions v WHERE v.generation = s.generation), "
        "(SELECT count(*) FROM llm_task_routes r WHERE r.generation > s.generation) "
        "FROM reconcile_state s WHERE s.id = 1"
    )

    def __init__(self, url: str, per_apply: int) -> None:
        self.engine = make_engine(url)
        self.per_apply = per_apply
        self.seen: set[tuple[int, int, int, int]] = set()
        self.reads = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def read(self) -> tuple[int, int, int, int]:
        with self.engine.connect() as conn:
            generation, rows, revs, later = conn.execute(self.QUERY).one()
        return int(generation), int(rows), int(revs), int(later)

    def consistent(self, seen: tuple[int, int, int, int]) -> bool:
        generation, rows, revs, later = seen
        if generation == 0:
            return (rows, revs, later) == (0, 0, 0)
        return (rows, revs, later) == (self.per_apply, 1, 0)

    def _poll(self) -> None:
        try:
            while not self._stop.is_set():
                self.seen.add(self.read())
                self.reads += 1
                self._stop.wait(0.005)  # leave the CPU to the applies being watched
        except BaseException as exc:  # reported by stop()
            self.errors.append(exc)

    def __enter__(self) -> ConsistencyReader:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.engine.dispose()
        assert not self.errors, self.errors
        assert self.reads > 0
        assert all(self.consistent(s) for s in self.seen), sorted(self.seen)


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
