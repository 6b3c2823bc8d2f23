"""Alembic migrations: models agree, round trips, the legacy backfill, concurrent upgrades."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import datetime

import pytest
from sqlalchemy import Engine, inspect, select, text

from reconciler.adapters.db import migrate, revision
from reconciler.adapters.db.engine import make_engine
from reconciler.adapters.db.tables import ollama_settings, providers, routes
from reconciler.errors import SchemaMismatch
from tests.conftest import Result

STATE_TABLES = {
    "llm_provider_configs",
    "llm_task_routes",
    "reconcile_state",
    "reconcile_revisions",
    "task_readiness",
}


def test_models_and_migrations_agree_on_a_fresh_database(engine: Engine) -> None:
    migrate.check(engine)  # alembic check: raises when autogenerate finds a difference
    assert migrate.current_revision(engine) == migrate.head_revision()


def test_the_revision_read_without_alembic_is_alembic_s(engine: Engine) -> None:
    """`revision.HEAD` is the newest migration shipped; `revision.current` reads what Alembic
    reads, before and after a migration."""
    assert migrate._head_of(migrate.migrations_dir()) == revision.HEAD
    with engine.connect() as conn:
        assert revision.current(conn) == migrate.current_revision(engine) == migrate.head_revision()
    migrate.downgrade(engine, "0005")
    with engine.connect() as conn:
        assert revision.current(conn) == migrate.current_revision(engine) == "0005"
    with pytest.raises(SchemaMismatch, match=f"behind this version's {revision.HEAD}"):
        revision.require_current(engine)


def test_db_check_command_passes_on_a_migrated_database(
    engine: Engine, cli: Callable[..., Result]
) -> None:
    result = cli("--database-url", engine.url.render_as_string(False), "db", "check")
    assert result.code == 0, result.output
    assert "matches the models" in result.stdout


def test_upgrade_downgrade_upgrade_round_trips(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate.upgrade(engine)
        assert set(inspect(engine).get_table_names()) >= STATE_TABLES
        migrate.downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        assert migrate.current_revision(engine) is None
        migrate.upgrade(engine)
        migrate.check(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()


def _legacy_database(db_url: str, rows: list[dict[str, object]]) -> Engine:
    """A database as an older deployment left it: only ollama_settings, no alembic."""
    engine = make_engine(db_url)
    ollama_settings.create(engine)
    if rows:
        with engine.begin() as conn:
            conn.execute(ollama_settings.insert(), rows)
    return engine


LEGACY_ROW = {
    "id": 1,
    "base_url": "http://10.0.0.5:11434/",
    "model": "llama3.1:8b",
    "enabled": True,
    "updated_at": datetime(2025, 3, 1, 12, 0),
}


def test_legacy_row_is_backfilled_into_a_provider_and_a_scoring_route(db_url: str) -> None:
    engine = _legacy_database(db_url, [LEGACY_ROW])
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            provider = conn.execute(select(providers)).one()
            route = conn.execute(select(routes)).one()
            legacy = conn.execute(select(ollama_settings)).one()
        assert (provider.name, provider.type, provider.enabled) == ("ollama", "ollama", True)
        assert provider.managed_by == "legacy"
        assert provider.config["endpoint"]["base_url"] == "http://10.0.0.5:11434"
        assert (route.task, route.provider, route.model) == ("scoring", "ollama", "llama3.1:8b")
        assert route.managed_by == "legacy"
        assert legacy.model == "llama3.1:8b"  # the old table stays readable
    finally:
        engine.dispose()


def test_backfill_is_idempotent_across_a_downgrade_and_upgrade(db_url: str) -> None:
    engine = _legacy_database(db_url, [{**LEGACY_ROW, "enabled": False}])
    try:
        migrate.upgrade(engine)
        migrate.downgrade(engine, "0001")
        migrate.upgrade(engine)
        with engine.connect() as conn:
            names = conn.execute(select(providers.c.name, providers.c.enabled)).all()
            tasks = conn.execute(select(routes.c.task, routes.c.enabled)).all()
        assert names == [("ollama", False)]
        assert tasks == [("scoring", False)]
    finally:
        engine.dispose()


def test_an_empty_legacy_table_backfills_nothing(db_url: str) -> None:
    engine = _legacy_database(db_url, [])
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(select(providers)).all() == []
    finally:
        engine.dispose()


def test_plan_refuses_a_database_whose_schema_is_behind(
    db_url: str, cli: Callable[..., Result], tmp_path: object
) -> None:
    engine = make_engine(db_url)
    migrate.upgrade(engine, "0001")
    engine.dispose()
    result = cli("--database-url", db_url, "plan")
    assert result.code == 1
    assert "behind" in result.stderr
    assert "reconciler db upgrade" in result.stderr


def test_plan_refuses_a_database_whose_schema_is_ahead(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaMismatch, match="does not know"):
        migrate.require_current(engine)


def test_an_empty_database_is_refused_with_the_command_to_run(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with pytest.raises(SchemaMismatch, match="run `reconciler db upgrade`"):
            migrate.require_current(engine)
    finally:
        engine.dispose()


def test_three_processes_upgrading_a_fresh_postgres_at_once_all_succeed(
    postgres_url: str,
) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "reconciler", "--database-url", postgres_url, "db", "upgrade"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outcomes = [(p.communicate(timeout=60)[1], p.returncode) for p in procs]
    assert [code for _, code in outcomes] == [0, 0, 0], outcomes
    engine = make_engine(postgres_url)
    try:
        assert migrate.current_revision(engine) == migrate.head_revision()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT generation FROM reconcile_state")).all() == [(0,)]
    finally:
        engine.dispose()


def test_db_commands_report_current_and_history(engine: Engine, cli: Callable[..., Result]) -> None:
    url = engine.url.render_as_string(False)
    current = cli("--database-url", url, "db", "current")
    assert current.code == 0
    assert f"{migrate.head_revision()} (up to date)" in current.stdout
    history = cli("db", "history")
    assert "<base> -> 0001" in history.stdout
    assert "0001 -> 0002" in history.stdout
    assert "0002 -> 0003" in history.stdout
