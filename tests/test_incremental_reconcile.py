"""An apply that keeps an `AppliedView` plans only what changed files declare, and is never wrong.

After every step the database is compared with a full plan of the same files made by a fresh
loader: no change may be left. Hand edits, a second writer, renamed files, moved routes and the
guards are covered on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, delete, update

from reconciler.adapters.db import store
from reconciler.adapters.db.tables import routes
from reconciler.core.config import ConfigLoader
from reconciler.core.plan import Kind, Observed, Op
from reconciler.core.registry import ProviderRegistry
from reconciler.daemon.metrics import Metrics
from reconciler.daemon.readiness_loop import ReadinessLoop
from reconciler.daemon.state import DaemonState
from reconciler.errors import UnsafePlan
from reconciler.service import reconcile
from tests.route_files import (
    PROVIDERS,
    Daemon,
    Files,
    hand_edit,
    left_over,
    model_of,
    some_files,
    write_files,
)


@pytest.fixture
def started(engine: Engine, tmp_path: Path) -> tuple[Daemon, Files]:
    files = some_files()
    write_files(tmp_path / "config", files)
    daemon = Daemon(engine, tmp_path / "config")
    daemon.cycle()
    return daemon, files


def test_an_edit_of_one_file_plans_only_what_that_file_declares(
    started: tuple[Daemon, Files],
) -> None:
    daemon, files = started
    files["routes-2.yaml"]["task-2-1"] = "edited"
    write_files(daemon.directory, files)
    result = daemon.cycle()
    assert [(a.op, a.key) for a in result.plan.actions] == [(Op.update, "task-2-1")]
    assert result.plan.unchanged == 2 + 4 * 3 - 1  # the whole config's, as a full plan says
    assert (daemon.view.partial_plans, daemon.view.full_plans) == (1, 1)
    assert left_over(daemon.engine, daemon.directory) == []


@pytest.fixture
def read_keys(monkeypatch: pytest.MonkeyPatch) -> list[set[tuple[Kind, str]]]:
    """The keys of every read by key, in order."""
    seen: list[set[tuple[Kind, str]]] = []
    read = store.read_observed_keys

    def recording(conn: Connection, keys: Iterable[tuple[Kind, str]]) -> list[Observed]:
        seen.append(set(keys))
        return read(conn, keys)

    monkeypatch.setattr(store, "read_observed_keys", recording)
    return seen


def test_an_edit_of_one_route_reads_and_plans_that_route_alone(
    started: tuple[Daemon, Files], read_keys: list[set[tuple[Kind, str]]]
) -> None:
    daemon, files = started
    files["routes-1.yaml"]["task-1-2"] = "edited"
    files["routes-1.yaml"]["task-1-9"] = "added"
    del files["routes-1.yaml"]["task-1-0"]
    write_files(daemon.directory, files)
    result = daemon.cycle()
    assert read_keys == [{(Kind.route, t) for t in ("task-1-0", "task-1-2", "task-1-9")}]
    assert sorted((str(a.op), a.key) for a in result.plan.actions) == [
        ("create", "task-1-9"),
        ("delete", "task-1-0"),
        ("update", "task-1-2"),
    ]
    assert left_over(daemon.engine, daemon.directory) == []


def test_an_edit_that_changes_no_item_reads_no_row(
    started: tuple[Daemon, Files], read_keys: list[set[tuple[Kind, str]]]
) -> None:
    daemon, _ = started
    path = daemon.directory / "routes-2.yaml"
    path.write_text("# reviewed\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
    result = daemon.cycle()
    assert not result.applied and read_keys == [set()]
    assert result.plan.unchanged == 2 + 4 * 3


def test_a_number_written_as_a_float_or_a_bool_is_a_change(
    started: tuple[Daemon, Files],
) -> None:
    daemon, _ = started
    path = daemon.directory / "routes-2.yaml"
    original = path.read_text(encoding="utf-8")
    for value, then in (("1", "1.0"), ("1.0", "true")):
        for written in (value, then):
            text = original.replace(
                "    model: model-2-0\n",
                f"    model: model-2-0\n    params: {{temperature: {written}}}\n",
            )
            path.write_text(text, encoding="utf-8")
            daemon.cycle()
            assert left_over(daemon.engine, daemon.directory) == [], written


def test_an_unchanged_config_plans_nothing_and_writes_nothing(
    started: tuple[Daemon, Files],
) -> None:
    daemon, _ = started
    result = daemon.cycle()
    assert not result.applied
    assert daemon.view.partial_plans == 1


def test_a_hand_edit_that_stamps_updated_at_sends_the_next_edit_to_a_full_plan(
    started: tuple[Daemon, Files],
) -> None:
    daemon, files = started
    hand_edit(daemon.engine, "task-0-0", "by-hand", stamp=True)
    files["routes-3.yaml"]["task-3-0"] = "edited"
    write_files(daemon.directory, files)
    result = daemon.cycle()
    assert daemon.view.full_plans == 2
    assert {a.key for a in result.plan.actions} == {"task-0-0", "task-3-0"}
    assert model_of(daemon.engine, "task-0-0") == "model-0-0"
    assert left_over(daemon.engine, daemon.directory) == []


def test_a_hand_edit_of_a_row_the_changed_file_declares_is_seen_without_updated_at(
    started: tuple[Daemon, Files],
) -> None:
    daemon, files = started
    hand_edit(daemon.engine, "task-1-0", "by-hand", stamp=False)
    files["routes-1.yaml"]["task-1-2"] = "edited"
    write_files(daemon.directory, files)
    daemon.cycle()
    assert (daemon.view.partial_plans, daemon.view.full_plans) == (0, 2)  # the count showed it
    assert model_of(daemon.engine, "task-1-0") == "model-1-0"
    assert left_over(daemon.engine, daemon.directory) == []


def test_a_hand_edit_that_keeps_updated_at_is_seen_at_once(started: tuple[Daemon, Files]) -> None:
    daemon, files = started
    hand_edit(daemon.engine, "task-0-0", "by-hand", stamp=False)
    files["routes-3.yaml"]["task-3-0"] = "edited"
    write_files(daemon.directory, files)
    result = daemon.cycle()
    assert {a.key for a in result.plan.actions} == {"task-0-0", "task-3-0"}
    assert model_of(daemon.engine, "task-0-0") == "model-0-0"
    assert not daemon.cycle(resync=True).applied
    assert left_over(daemon.engine, daemon.directory) == []


def test_the_database_counts_every_write_to_the_tables_but_an_apply_s_own_on_postgresql(
    started: tuple[Daemon, Files], db_url: str
) -> None:
    daemon, files = started
    with daemon.engine.connect() as conn:
        before = store.fingerprint(conn)
    hand_edit(daemon.engine, "task-0-0", "by-hand", stamp=False)
    with daemon.engine.begin() as conn:
        conn.execute(delete(routes).where(routes.c.task == "task-0-1"))
    with daemon.engine.connect() as conn:
        hand = store.fingerprint(conn)
    assert hand.generation == before.generation
    assert hand.changes == before.changes + 2  # one UPDATE, one DELETE, by hand
    files["routes-2.yaml"]["task-2-2"] = "edited"
    write_files(daemon.directory, files)
    result = daemon.cycle()  # puts both rows back and writes the edit: three rows
    assert result.applied and len(result.plan.actions) == 3
    with daemon.engine.connect() as conn:
        after = store.fingerprint(conn)
    assert after.generation == hand.generation + 1
    own = 0 if db_url.startswith("postgresql") else 3  # SQLite counts its one writer's rows too
    assert after.changes == hand.changes + own


def test_a_write_by_another_transaction_during_an_apply_sends_the_next_to_a_full_plan(
    started: tuple[Daemon, Files], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: nobody writes while an apply runs")
    daemon, files = started
    read = store.read_observed_keys

    def meanwhile(conn: Connection, keys: Iterable[tuple[Kind, str]]) -> list[Observed]:
        hand_edit(daemon.engine, "task-0-0", "by-hand", stamp=False)  # commits at once
        return read(conn, keys)

    monkeypatch.setattr(store, "read_observed_keys", meanwhile)
    files["routes-3.yaml"]["task-3-0"] = "edited"
    write_files(daemon.directory, files)
    assert daemon.cycle().applied
    monkeypatch.setattr(store, "read_observed_keys", read)
    files["routes-3.yaml"]["task-3-1"] = "edited"
    write_files(daemon.directory, files)
    result = daemon.cycle()
    assert daemon.view.full_plans == 2  # the view was forgotten: the hand edit is not in it
    assert {a.key for a in result.plan.actions} == {"task-0-0", "task-3-1"}
    assert left_over(daemon.engine, daemon.directory) == []


def test_a_second_writer_between_two_cycles_sends_the_next_to_a_full_plan(
    started: tuple[Daemon, Files], tmp_path: Path
) -> None:
    daemon, files = started
    other = {**files, "routes-9.yaml": {"task-9-0": "theirs"}}
    other["routes-0.yaml"] = {**files["routes-0.yaml"], "task-0-1": "theirs"}
    write_files(tmp_path / "other", other)
    theirs = reconcile.load_config([tmp_path / "other"], ConfigLoader())
    assert reconcile.apply(daemon.engine, theirs, lock_timeout=5).applied  # as the CLI does
    files["routes-2.yaml"]["task-2-2"] = "edited"
    write_files(daemon.directory, files)
    result = daemon.cycle()
    assert daemon.view.full_plans == 2
    assert {a.key for a in result.plan.actions} == {"task-9-0", "task-0-1", "task-2-2"}
    assert left_over(daemon.engine, daemon.directory) == []
    assert not daemon.cycle(resync=True).applied


def test_a_renamed_file_changes_nothing(started: tuple[Daemon, Files]) -> None:
    daemon, files = started
    files["routes-7.yaml"] = files.pop("routes-1.yaml")
    write_files(daemon.directory, files)
    result = daemon.cycle()
    assert not result.applied
    assert daemon.view.partial_plans == 1
    assert left_over(daemon.engine, daemon.directory) == []
    assert not daemon.cycle(resync=True).applied


def test_a_route_moved_to_another_file_in_one_save_changes_nothing(
    started: tuple[Daemon, Files],
) -> None:
    daemon, files = started
    files["routes-3.yaml"]["task-0-0"] = files["routes-0.yaml"].pop("task-0-0")
    write_files(daemon.directory, files)
    assert not daemon.cycle().applied
    assert left_over(daemon.engine, daemon.directory) == []


def test_a_route_moved_in_two_saves_is_deleted_then_created(
    started: tuple[Daemon, Files],
) -> None:
    daemon, files = started
    model = files["routes-0.yaml"].pop("task-0-0")
    write_files(daemon.directory, files)
    assert [a.op for a in daemon.cycle().plan.actions] == [Op.delete]
    assert left_over(daemon.engine, daemon.directory) == []
    files["routes-3.yaml"]["task-0-0"] = model
    write_files(daemon.directory, files)
    assert [a.op for a in daemon.cycle().plan.actions] == [Op.create]
    assert daemon.view.partial_plans == 2
    assert left_over(daemon.engine, daemon.directory) == []
    assert not daemon.cycle(resync=True).applied


def test_the_mass_deletion_guard_counts_every_managed_row(engine: Engine, tmp_path: Path) -> None:
    files = some_files()
    extra = {"routes-9.yaml": {f"hand-{n}": "m" for n in range(10)}}
    write_files(tmp_path / "other", {**files, **extra})
    state = reconcile.load_config([tmp_path / "other"], ConfigLoader())
    reconcile.apply(engine, state, lock_timeout=5)
    with engine.begin() as conn:  # ten rows the files do not manage
        conn.execute(update(routes).where(routes.c.task.like("hand-%")).values(managed_by="x"))
    write_files(tmp_path / "config", files)
    daemon = Daemon(engine, tmp_path / "config")
    assert not daemon.cycle().applied
    for name in ("routes-0.yaml", "routes-1.yaml", "routes-2.yaml"):
        files[name] = {}
    write_files(daemon.directory, files)
    with pytest.raises(UnsafePlan, match="deletes 9 of 14 managed rows"):
        daemon.cycle()
    assert daemon.view.partial_plans == 1  # 9 of 24 rows planned, weighed against all 14
    files["routes-2.yaml"] = some_files()["routes-2.yaml"]
    write_files(daemon.directory, files)
    assert daemon.cycle().plan.count(Op.delete) == 6  # 6 of 14: allowed
    assert left_over(engine, daemon.directory) == []


def test_a_protected_route_removed_from_a_changed_file_is_refused(
    engine: Engine, tmp_path: Path
) -> None:
    files = some_files()
    write_files(tmp_path / "config", files, protect=frozenset({"task-1-1"}))
    daemon = Daemon(engine, tmp_path / "config")
    daemon.cycle()
    del files["routes-1.yaml"]["task-1-1"]
    write_files(daemon.directory, files, protect=frozenset({"task-1-1"}))
    with pytest.raises(UnsafePlan, match="protected"):
        daemon.cycle()
    assert model_of(engine, "task-1-1") == "model-1-1"


def test_a_provider_deletion_is_planned_from_everything(started: tuple[Daemon, Files]) -> None:
    daemon, _ = started
    (daemon.directory / "providers.yaml").write_text(
        PROVIDERS.split("  spare:", maxsplit=1)[0], encoding="utf-8"
    )
    result = daemon.cycle()
    assert [(a.op, a.key) for a in result.plan.actions] == [(Op.delete, "spare")]
    assert daemon.view.full_plans == 2
    assert left_over(daemon.engine, daemon.directory) == []


EDITS = st.lists(
    st.tuples(
        st.sampled_from(["model", "move", "remove", "add", "rename", "hand"]),
        st.integers(0, 3),
        st.integers(0, 3),
        st.integers(0, 2),
    ),
    min_size=1,
    max_size=8,
)


def _edit(files: Files, engine: Engine, step: tuple[str, int, int, int], n: int) -> None:
    """One random edit: of a file, or of the database by hand (stamping `updated_at`)."""
    kind, a, b, r = step
    names = sorted(files)
    source, target = names[a % len(names)], names[b % len(names)]
    tasks = sorted(files[source])
    task = tasks[r % len(tasks)] if tasks else None
    if kind == "model" and task:
        files[source][task] = f"m{n}"
    elif kind == "move" and task:
        files[target][task] = files[source].pop(task)
    elif kind == "remove" and task and sum(map(len, files.values())) > 8:
        del files[source][task]
    elif kind == "add":
        files[target][f"new-{n}"] = f"m{n}"
    elif kind == "rename":
        files[f"routes-r{n}.yaml"] = files.pop(source)
    elif kind == "hand" and task:
        hand_edit(engine, task, f"hand-{n}", stamp=True)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(edits=EDITS)
def test_every_edit_sequence_ends_where_a_full_plan_would(
    engine: Engine, edits: list[tuple[str, int, int, int]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "config"
        files = some_files()
        write_files(directory, files)
        first = reconcile.load_config([directory], ConfigLoader())
        reconcile.apply(engine, first, lock_timeout=5, allow_mass_delete=True)
        daemon = Daemon(engine, directory)
        daemon.cycle()
        for n, step in enumerate(edits):
            _edit(files, engine, step, n)
            write_files(directory, files)
            daemon.cycle()
            assert left_over(engine, directory) == [], f"after {step}"
        assert not daemon.cycle(resync=True).applied


def test_a_provider_that_is_down_is_one_log_line_however_many_tasks_route_to_it(
    started: tuple[Daemon, Files], caplog: pytest.LogCaptureFixture
) -> None:
    daemon, _ = started
    loop = ReadinessLoop(
        daemon.engine,
        ProviderRegistry(),
        DaemonState("config", "db"),
        Metrics(),
        30.0,
        lambda: True,
    )
    with caplog.at_level(logging.INFO, logger="reconciler.daemon.readiness_loop"):
        found = asyncio.run(loop.round_once())
        asyncio.run(loop.round_once())  # nothing changed: nothing logged again
    assert len(found) == 12
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert lines[0].startswith("12 tasks on provider local are not_ready: ")
