"""`apply` and `plan` of files the database already holds exactly answer from its record.

Each apply that writes records in its revision whether it left every managed row exactly as its
files declare (their key: the files and the rules that read them) and the write counter as it
left it. While both hold, `plan` and `apply` shown as text find nothing to do without reading
either table. Every test here checks the record's answer against a full plan by a fresh loader,
after the events that must send it back to reading everything: a hand edit, a second writer, a
renamed or moved file, other rules, drift left in place, a write during the apply, a schema
downgrade. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, event, insert, select, text, update

from reconciler.adapters.db import migrate, store
from reconciler.adapters.db.tables import revisions, routes
from reconciler.core.config import ConfigLoader, DesiredState
from reconciler.core.plan import Plan
from reconciler.core.registry import BUILTIN_TYPES, ProviderRegistry
from reconciler.service import reconcile
from tests.conftest import Result, StatementCounter
from tests.route_files import (
    PROVIDERS,
    Daemon,
    Files,
    hand_edit,
    model_of,
    some_files,
    write_files,
)

Shown = tuple[list[str], int, list[str]]  # actions, unchanged, unmanaged


def _load(directory: Path, registry: ProviderRegistry | None = None) -> DesiredState:
    """The files as a new process loads them: a fresh loader."""
    return reconcile.load_config([directory], ConfigLoader(registry))


def _shown(the_plan: Plan) -> Shown:
    actions = [f"{a.op} {a.kind} {a.key}" for a in the_plan.actions]
    return actions, the_plan.unchanged, [f"{kind} {key}" for kind, key in the_plan.unmanaged]


def _recorded(engine: Engine, directory: Path) -> bool:
    """Whether `plan` answers these files from the record, after checking that its answer is
    the full plan's."""
    state = _load(directory)
    quick = reconcile.plan(engine, state, by_record=True)
    full = reconcile.plan(engine, state)
    assert _shown(quick) == _shown(full)
    assert full.base_digest
    return quick.base_digest == ""  # the record's plan never read the rows


def _apply(
    engine: Engine, directory: Path, *, allow_mass_delete: bool = False
) -> reconcile.ApplyResult:
    """`reconciler apply` as the CLI runs it: a fresh loader, the record allowed."""
    state = _load(directory)
    return reconcile.apply(
        engine, state, lock_timeout=5, by_record=True, allow_mass_delete=allow_mass_delete
    )


def _record(engine: Engine) -> store.ExactRecord | None:
    with engine.connect() as conn:
        return store.exact_record(conn, store.fingerprint(conn).generation)


@pytest.fixture
def applied(engine: Engine, tmp_path: Path) -> tuple[Path, Files]:
    files = some_files()
    directory = tmp_path / "config"
    write_files(directory, files)
    assert _apply(engine, directory).applied
    return directory, files


def test_an_apply_of_the_files_just_applied_reads_no_table_and_writes_nothing(
    engine: Engine, applied: tuple[Path, Files], counter: StatementCounter
) -> None:
    directory, _ = applied
    result = _apply(engine, directory)
    assert not result.applied
    assert counter.selects_of("llm_task_routes.params") == 0
    assert counter.selects_of("llm_provider_configs.config") == 0
    assert counter.writes == 0
    assert _shown(result.plan) == ([], 2 + 4 * 3, [])
    assert _recorded(engine, directory)


def test_the_record_names_the_files_and_the_counter_the_apply_left(
    engine: Engine, applied: tuple[Path, Files]
) -> None:
    directory, files = applied
    first = _record(engine)
    assert first is not None and first.key == reconcile.exact_key(_load(directory))
    files["routes-1.yaml"]["task-1-1"] = "edited"
    write_files(directory, files)
    assert _apply(engine, directory).applied  # not from the record: the files changed
    second = _record(engine)
    assert second is not None and second.key == reconcile.exact_key(_load(directory))
    assert second.key != first.key
    assert _recorded(engine, directory)


def test_a_hand_edit_is_put_back_by_the_next_apply(
    engine: Engine, applied: tuple[Path, Files]
) -> None:
    directory, _ = applied
    hand_edit(engine, "task-2-0", "by-hand", stamp=False)
    assert not _recorded(engine, directory)
    result = _apply(engine, directory)
    assert [a.key for a in result.plan.actions] == ["task-2-0"]
    assert model_of(engine, "task-2-0") == "model-2-0"
    assert _recorded(engine, directory)  # the correction is recorded in turn


def test_a_row_added_by_hand_is_shown_unmanaged_from_the_record_too(
    engine: Engine, applied: tuple[Path, Files]
) -> None:
    directory, _ = applied
    with engine.begin() as conn:
        row = conn.execute(select(routes).where(routes.c.task == "task-0-0")).one()._asdict()
        del row["id"]
        conn.execute(insert(routes).values({**row, "task": "by-hand", "managed_by": "manual"}))
    assert not _recorded(engine, directory)  # the counter moved
    files = some_files()
    files["routes-0.yaml"]["task-0-0"] = "edited"
    write_files(directory, files)
    assert _apply(engine, directory).applied
    assert _recorded(engine, directory)
    quick = reconcile.plan(engine, _load(directory), by_record=True)
    assert [f"{kind} {key}" for kind, key in quick.unmanaged] == ["route by-hand"]


def test_a_second_writer_s_files_are_not_taken_for_these(
    engine: Engine, applied: tuple[Path, Files], tmp_path: Path
) -> None:
    directory, files = applied
    theirs = {**files, "routes-0.yaml": {**files["routes-0.yaml"], "task-0-1": "theirs"}}
    write_files(tmp_path / "other", theirs)
    assert _apply(engine, tmp_path / "other").applied
    assert _recorded(engine, tmp_path / "other")
    assert not _recorded(engine, directory)
    result = _apply(engine, directory)
    assert [a.key for a in result.plan.actions] == ["task-0-1"]
    assert _recorded(engine, directory)


def test_renamed_and_moved_files_plan_from_the_rows_and_find_nothing(
    engine: Engine, applied: tuple[Path, Files], counter: StatementCounter
) -> None:
    directory, files = applied
    files["routes-7.yaml"] = files.pop("routes-1.yaml")
    files["routes-3.yaml"]["task-0-0"] = files["routes-0.yaml"].pop("task-0-0")
    write_files(directory, files)
    assert not _recorded(engine, directory)  # other files: the rows are read
    counter.reset()
    result = _apply(engine, directory)
    assert not result.applied and counter.selects_of("llm_task_routes.params") == 1
    assert not _recorded(engine, directory)  # nothing was written, so nothing was recorded


def test_files_read_under_other_rules_are_planned_from_the_rows(
    engine: Engine, applied: tuple[Path, Files]
) -> None:
    directory, _ = applied
    plugin = ProviderRegistry(BUILTIN_TYPES, {"ollama": "'ollama = acme:OLLAMA' (acme 2.0)"})
    other = _load(directory, plugin)
    assert other.digest == _load(directory).digest
    assert reconcile.exact_key(other) != reconcile.exact_key(_load(directory))
    quick = reconcile.plan(engine, other, by_record=True)
    assert quick.base_digest  # read and planned in full
    assert not quick.has_changes


def test_a_state_no_loader_made_has_no_key() -> None:
    """A state made by hand has a digest of its files, perhaps, but no rules to tell it by."""
    made = DesiredState({}, {}, (("routes.yaml", "0" * 64),), digest="1" * 64)
    assert reconcile.exact_key(made) is None
    assert reconcile.exact_key(replace(made, rules="2" * 64)) is not None


def test_files_read_by_other_code_are_planned_from_the_rows(
    engine: Engine, applied: tuple[Path, Files], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another build of reconciler under the same version number (a development install, a
    patched copy) may want other rows from the same files."""
    directory, _ = applied
    assert _recorded(engine, directory)
    monkeypatch.setattr(reconcile, "code_digest", lambda: "patched")
    assert not _recorded(engine, directory)


def test_a_trigger_that_no_longer_counts_writes_voids_every_record(
    engine: Engine, applied: tuple[Path, Files], db_url: str
) -> None:
    """A table rebuilt by another tool loses its triggers; a disabled one counts nothing."""
    directory, _ = applied
    with engine.begin() as conn:
        if db_url.startswith("postgresql"):
            conn.execute(
                text("ALTER TABLE llm_task_routes DISABLE TRIGGER llm_task_routes_changes")
            )
        else:
            conn.execute(text("DROP TRIGGER llm_task_routes_update_changes"))
    hand_edit(engine, "task-1-2", "uncounted", stamp=False)
    assert not _recorded(engine, directory)
    assert [a.key for a in _apply(engine, directory).plan.actions] == ["task-1-2"]
    assert not _recorded(engine, directory)  # and so it stays, record or not


@pytest.fixture
def daemon(engine: Engine, applied: tuple[Path, Files]) -> Daemon:
    """The daemon's worker, once it has applied the files too (nothing to do)."""
    worker = Daemon(engine, applied[0])
    worker.cycle()
    return worker


def test_drift_left_in_place_is_not_recorded_as_exact(
    engine: Engine, applied: tuple[Path, Files], daemon: Daemon
) -> None:
    directory, files = applied
    hand_edit(engine, "task-1-0", "by-hand", stamp=False)
    files["routes-2.yaml"]["task-2-0"] = "edited"
    write_files(directory, files)
    result = daemon.cycle(leave_drift=True)
    assert [a.key for a in result.plan.actions] == ["task-2-0"]  # the drift is only reported
    assert _record(engine) is None
    assert not _recorded(engine, directory)
    assert [a.key for a in _apply(engine, directory).plan.actions] == ["task-1-0"]
    assert _recorded(engine, directory)


def test_a_partial_apply_after_an_exact_one_is_exact_and_after_drift_is_not(
    engine: Engine, applied: tuple[Path, Files], daemon: Daemon
) -> None:
    directory, files = applied
    files["routes-3.yaml"]["task-3-2"] = "edited"
    write_files(directory, files)
    assert daemon.cycle().applied
    assert daemon.view.partial_plans >= 1
    assert _recorded(engine, directory)
    # Drift left in place by one apply: the partial ones after it must not claim exactness.
    hand_edit(engine, "task-0-2", "by-hand", stamp=False)
    files["routes-3.yaml"]["task-3-1"] = "edited"
    write_files(directory, files)
    daemon.cycle(leave_drift=True)
    files["routes-3.yaml"]["task-3-0"] = "edited"
    write_files(directory, files)
    partial = daemon.view.partial_plans
    daemon.cycle(leave_drift=True)
    assert daemon.view.partial_plans == partial + 1
    assert _record(engine) is None
    assert not _recorded(engine, directory)
    assert model_of(engine, "task-0-2") == "by-hand"


def test_a_write_during_the_apply_is_not_recorded_as_exact(
    engine: Engine, applied: tuple[Path, Files], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: nobody writes while an apply runs")
    directory, files = applied
    bump = store.bump_generation

    def meanwhile(conn: Connection, now: datetime) -> int:
        # Committed after this apply read the rows and before it writes (once it has, the hand
        # edit's count would wait for this apply's lock on the counter row).
        hand_edit(engine, "task-0-0", "by-hand", stamp=False)
        return bump(conn, now)

    monkeypatch.setattr(store, "bump_generation", meanwhile)
    files["routes-3.yaml"]["task-3-0"] = "edited"
    write_files(directory, files)
    assert _apply(engine, directory).applied
    monkeypatch.setattr(store, "bump_generation", bump)
    assert _record(engine) is None
    assert [a.key for a in _apply(engine, directory).plan.actions] == ["task-0-0"]


def test_a_database_taken_down_before_the_counter_and_back_plans_from_the_rows(
    engine: Engine, applied: tuple[Path, Files]
) -> None:
    directory, _ = applied
    assert _recorded(engine, directory)
    migrate.downgrade(engine, "0006")  # the counter and its triggers go too
    hand_edit(engine, "task-1-1", "meanwhile", stamp=False)  # counted by nothing
    migrate.upgrade(engine)  # the counter starts again at 0
    assert not _recorded(engine, directory)
    assert [a.key for a in _apply(engine, directory).plan.actions] == ["task-1-1"]


def test_a_record_edited_by_hand_to_other_files_is_not_believed(
    engine: Engine, applied: tuple[Path, Files]
) -> None:
    directory, _ = applied
    with engine.begin() as conn:
        conn.execute(update(revisions).values(exact_key="0" * 64))
    assert not _recorded(engine, directory)


def test_the_cli_answers_from_the_record_only_where_it_shows_no_digest(
    engine: Engine, applied: tuple[Path, Files], cli: Callable[..., Result], tmp_path: Path
) -> None:
    import json

    directory, _ = applied
    base = ["--database-url", engine.url.render_as_string(False), "--config", str(directory)]
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", record)  # every engine the CLI makes
    try:
        shown = cli(*base, "apply")
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert shown.code == 0, shown.output
    assert "Nothing to apply; nothing was written" in shown.output
    assert statements and not [s for s in statements if "llm_task_routes.params" in s]
    as_json = cli(*base, "apply", "--format", "json")
    assert as_json.code == 0, as_json.output
    document = json.loads(as_json.stdout)
    assert document["applied"] is False and len(document["base_digest"]) == 64
    planned = cli(*base, "plan", "--format", "json")
    assert len(json.loads(planned.stdout)["base_digest"]) == 64
    saved = tmp_path / "plan.json"
    assert cli(*base, "plan", "--out", str(saved)).code == 0
    assert len(json.loads(saved.read_text())["base_digest"]) == 64
    assert cli(*base, "apply", str(saved)).code == 0  # a plan saved now applies


EDITS = st.lists(
    st.tuples(
        st.sampled_from(["model", "move", "rename", "hand", "other", "daemon", "drift"]),
        st.integers(0, 3),
        st.integers(0, 2),
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(edits=EDITS)
def test_every_sequence_of_writers_leaves_the_record_s_answer_the_full_plan_s(
    engine: Engine, edits: list[tuple[str, int, int]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory, other = Path(tmp) / "config", Path(tmp) / "other"
        files = some_files()
        write_files(directory, files)
        reconcile.apply(engine, _load(directory), lock_timeout=5, allow_mass_delete=True)
        daemon = Daemon(engine, directory)
        for n, (kind, f, r) in enumerate(edits):
            name = sorted(files)[f % len(files)]
            task = sorted(files[name])[r % len(files[name])] if files[name] else None
            if kind == "model" and task:
                files[name][task] = f"m{n}"
            elif kind == "move" and task:
                files[sorted(files)[(f + 1) % len(files)]][task] = files[name].pop(task)
            elif kind == "rename":
                files[f"routes-r{n}.yaml"] = files.pop(name)
            elif kind == "hand" and task:
                hand_edit(engine, task, f"hand-{n}", stamp=False)
            elif kind == "other":
                write_files(other, {name: {f"theirs-{n}": "x"}})
                (other / "providers.yaml").write_text(PROVIDERS, encoding="utf-8")
                reconcile.apply(engine, _load(other), lock_timeout=5, allow_mass_delete=True)
            write_files(directory, files)
            if kind == "daemon":
                daemon.cycle()
            elif kind == "drift":
                daemon.cycle(leave_drift=True)
            _recorded(engine, directory)  # checks the record's answer against a full plan
            _apply(engine, directory, allow_mass_delete=True)
            assert not reconcile.plan(engine, _load(directory)).has_changes, f"after {kind}"
            _recorded(engine, directory)
