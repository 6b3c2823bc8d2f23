"""`db downgrade` says what it drops, asks for --yes before losing data, keeps adopted tables."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, inspect, select, text

from reconciler.adapters.db import migrate
from reconciler.adapters.db.engine import make_engine
from reconciler.adapters.db.tables import ollama_settings, scoring_jobs
from reconciler.errors import UnsafePlan
from tests.conftest import Result

LEGACY_ROW = {
    "id": 1,
    "base_url": "http://10.0.0.5:11434/",
    "model": "llama3.1:8b",
    "enabled": True,
    "updated_at": datetime(2025, 3, 1, 12, 0),
}


@pytest.fixture
def database(db_url: str) -> Iterator[Engine]:
    """An engine on an empty database; the test migrates it as it needs."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def downgrade(database: Engine, cli: Callable[..., Result]) -> Callable[..., Result]:
    """Run `reconciler --database-url URL db downgrade ARGS` in this process."""
    url = database.url.render_as_string(hide_password=False)
    return lambda *args: cli("--database-url", url, "db", "downgrade", *args)


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def schema_objects(engine: Engine) -> set[str]:
    """Every table, and every `table.column`, in the database."""
    found = tables(engine)
    inspector = inspect(engine)
    return found | {f"{t}.{c['name']}" for t in found for c in inspector.get_columns(t)}


def dropped(before: set[str], after: set[str]) -> set[str]:
    """What went between two `schema_objects`: whole tables, and columns of tables still there."""
    remaining = {name for name in after if "." not in name}
    return {n for n in before - after if "." not in n or n.partition(".")[0] in remaining}


def legacy_database(engine: Engine) -> None:
    """A database as an older deployment left it: ollama_settings with its row, no alembic."""
    ollama_settings.create(engine)
    with engine.begin() as conn:
        conn.execute(ollama_settings.insert(), [LEGACY_ROW])


def queue_one_job(engine: Engine) -> None:
    now = datetime.now(UTC)
    row = {"task": "scoring", "item_id": "a", "payload": {}, "status": "queued", "attempts": 0}
    with engine.begin() as conn:
        conn.execute(
            scoring_jobs.insert(),
            [{**row, "not_before": now, "created_at": now, "updated_at": now}],
        )


def test_an_adopted_legacy_table_keeps_its_row_through_downgrade_base(
    database: Engine, downgrade: Callable[..., Result]
) -> None:
    legacy_database(database)
    migrate.upgrade(database)
    result = downgrade("base", "--yes")
    assert result.code == 0, result.output
    assert "left in place: ollama_settings (1 row)" in result.stdout
    assert tables(database) == {"ollama_settings"}
    with database.connect() as conn:
        assert conn.execute(select(ollama_settings.c.model)).scalars().all() == ["llama3.1:8b"]
    assert migrate.current_revision(database) is None
    migrate.upgrade(database)  # adopted again, so kept again
    assert downgrade("base", "--yes").code == 0
    assert tables(database) == {"ollama_settings"}


def test_a_legacy_table_the_migrations_created_is_dropped_on_downgrade_base(
    database: Engine, downgrade: Callable[..., Result]
) -> None:
    migrate.upgrade(database)
    result = downgrade("base", "--yes")
    assert result.code == 0, result.output
    assert "dropped scoring_jobs (0 rows)" in result.stdout
    assert "ollama_settings (0 rows)" in result.stdout
    assert tables(database) == set()


def test_downgrade_base_without_yes_drops_nothing_and_lists_what_it_would(
    database: Engine, downgrade: Callable[..., Result]
) -> None:
    legacy_database(database)
    migrate.upgrade(database)
    queue_one_job(database)
    before = tables(database)
    result = downgrade("base")
    assert result.code == 1
    assert result.stdout == ""
    message = result.stderr.strip()
    assert "\n" not in message
    assert "would drop scoring_jobs (1 row), " in message
    assert "reconcile_state (1 row)" in message
    assert "left in place: ollama_settings (1 row)" in message
    assert message.endswith("re-run with --yes to drop them")
    assert tables(database) == before
    assert migrate.current_revision(database) == migrate.head_revision()


def test_a_downgrade_that_drops_rows_needs_yes_and_then_says_what_it_removed(
    database: Engine, downgrade: Callable[..., Result]
) -> None:
    migrate.upgrade(database, "0004")
    queue_one_job(database)
    refused = downgrade("0003")
    assert refused.code == 1
    assert "would drop scoring_jobs (1 row), llm_task_routes.output_schema" in refused.stderr
    assert "scoring_jobs" in tables(database)
    done = downgrade("0003", "--yes")
    assert done.code == 0, done.output
    assert "downgrading 0004 -> 0003 drops scoring_jobs (1 row)" in done.stdout
    assert "schema downgraded 0004 -> 0003; dropped scoring_jobs (1 row)" in done.stdout
    assert "scoring_jobs" not in tables(database)


def test_a_downgrade_that_drops_no_data_needs_no_yes(
    database: Engine, downgrade: Callable[..., Result]
) -> None:
    migrate.upgrade(database, "0004")
    result = downgrade("0003")
    assert result.code == 0, result.output
    assert "drops scoring_jobs (0 rows), llm_task_routes.output_schema (0 values)" in result.stdout
    assert migrate.current_revision(database) == "0003"


def test_a_downgrade_to_the_current_revision_does_nothing(
    database: Engine, downgrade: Callable[..., Result]
) -> None:
    migrate.upgrade(database)
    result = downgrade(migrate.head_revision())
    assert result.code == 0, result.output
    assert f"schema already at {migrate.head_revision()}" in result.stdout


@pytest.mark.parametrize(
    ("revision", "says"),
    [("nonsense", "No such revision"), ("0003", "not below the database's revision 0002")],
)
def test_a_bad_revision_is_one_line_and_exit_1(
    database: Engine, downgrade: Callable[..., Result], revision: str, says: str
) -> None:
    migrate.upgrade(database, "0002")
    result = downgrade(revision)
    assert result.code == 1
    assert result.stdout == ""
    assert "Traceback" not in result.output
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: cannot downgrade to {revision!r}: ")
    assert says in result.stderr
    assert "reconciler db history" in result.stderr


def test_the_guard_inside_the_migration_refuses_rows_that_arrived_after_a_preview(
    database: Engine,
) -> None:
    migrate.upgrade(database, "0004")
    assert not migrate.plan_downgrade(database, "0003").loses_data
    queue_one_job(database)
    with pytest.raises(UnsafePlan, match=r"scoring_jobs \(1 row\)"):
        migrate.downgrade(database, "0003", allow_loss=False)
    assert migrate.current_revision(database) == "0004"
    assert "scoring_jobs" in tables(database)


def test_a_database_migrated_before_origins_were_recorded_keeps_its_legacy_table(
    database: Engine,
) -> None:
    migrate.upgrade(database, "0004")
    with database.begin() as conn:  # as 0001 left it before it recorded where tables came from
        conn.execute(text("DROP TABLE schema_table_origins"))
    migrate.upgrade(database)
    migrate.check(database)
    assert migrate.plan_downgrade(database, "0004").drops == (
        migrate.Contents("schema_table_origins", 1),  # 0007's write counter is no data to lose
    )
    migrate.downgrade(database, "base")
    assert tables(database) == {"ollama_settings"}


def test_an_upgrade_over_origins_left_behind_by_an_older_downgrade_records_them_anew(
    database: Engine,
) -> None:
    migrate.upgrade(database, "0001")
    with database.begin() as conn:  # what an older reconciler's `db downgrade base` left
        conn.execute(text("DROP TABLE ollama_settings"))
        conn.execute(text("DELETE FROM alembic_version"))
    migrate.upgrade(database)
    assert migrate.plan_downgrade(database, "base").keeps == ()
    migrate.downgrade(database, "base")
    assert tables(database) == set()


COUNTERS = {  # what a revision drops that holds no data
    "0007": {"reconcile_state.changes"},
    "0008": {"reconcile_revisions.exact_key", "reconcile_revisions.exact_changes"},
}


@pytest.mark.parametrize("legacy", [False, True], ids=["fresh", "legacy"])
def test_each_revision_declares_exactly_what_its_downgrade_drops(
    database: Engine, legacy: bool
) -> None:
    if legacy:
        legacy_database(database)
    migrate.upgrade(database)
    while (current := migrate.current_revision(database)) is not None:
        before = schema_objects(database)
        planned = {item.name for item in migrate.plan_downgrade(database, "-1").drops}
        planned |= COUNTERS.get(current, set())  # dropped, and nothing lost with them
        migrate.downgrade(database, "-1")
        gone = dropped(before, schema_objects(database))
        assert planned == gone, f"revision {current}"
