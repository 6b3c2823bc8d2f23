"""The schema revision a database is at, and the one this code needs, read without Alembic.

Every command that uses the database checks the revision first. That is one query; importing
Alembic to make it would cost a short command most of its start-up. Migrations themselves, and
the messages for a database at an unknown revision, are `migrate`'s.
"""

from __future__ import annotations

import os

from sqlalchemy import Connection, Engine, inspect, text

from reconciler.errors import SchemaMismatch

# The newest revision in reconciler/migrations/versions (tests/test_migrations.py holds the two
# equal). RECONCILER_MIGRATIONS_DIR, which points elsewhere, is read through Alembic.
HEAD = "0008"
MIGRATIONS_ENV = "RECONCILER_MIGRATIONS_DIR"


def head() -> str:
    """The revision this code needs."""
    if os.environ.get(MIGRATIONS_ENV):
        from reconciler.adapters.db import migrate

        return migrate.head_revision()
    return HEAD


def current(conn: Connection) -> str | None:
    """The database's revision; None when it was never migrated."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    value = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return None if value is None else str(value)


def require_current(bind: Engine | Connection) -> None:
    """Refuse a database whose schema is behind or ahead of this code, saying what to run.

    Given a connection (inside a transaction, say), it asks on that one instead of another."""
    if isinstance(bind, Connection):
        found = current(bind)
    else:
        with bind.connect() as conn:
            found = current(conn)
    needed = head()
    if found == needed:
        return
    if found is None:
        raise SchemaMismatch(
            "the database has no reconciler schema yet; run `reconciler db upgrade`"
        )
    from reconciler.adapters.db import migrate

    if found in {rev for rev, _, _ in migrate.history()}:
        raise SchemaMismatch(
            f"the database schema is at revision {found}, behind this version's {needed}; "
            "run `reconciler db upgrade`"
        )
    raise SchemaMismatch(
        f"the database schema is at revision {found}, which this version does not know "
        f"(newest known: {needed}); upgrade reconciler, or run `reconciler db downgrade "
        f"{needed}` with the newer version"
    )
