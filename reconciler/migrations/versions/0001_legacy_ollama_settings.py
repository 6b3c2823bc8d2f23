"""The single-row ollama_settings table that older deployments have.

Older deployments created `ollama_settings` themselves; this revision adopts such a table as it
is, and creates it otherwise. `schema_table_origins` records which of the two happened, and
downgrade() drops only the tables recorded as created here: an adopted table keeps its rows. A
database migrated before that record existed has none, and keeps the table too.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

LEGACY = "ollama_settings"
ORIGINS = "schema_table_origins"


def upgrade() -> None:
    bind = op.get_bind()
    adopted = sa.inspect(bind).has_table(LEGACY)
    if not adopted:
        op.create_table(
            LEGACY,
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("base_url", sa.String(), nullable=False),
            sa.Column("model", sa.String(), nullable=False),
            sa.Column("enabled", sa.Boolean(), nullable=False),
            sa.Column("updated_at", sa.DateTime(), nullable=True),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_ollama_settings")),
        )
    if not sa.inspect(bind).has_table(ORIGINS):
        op.create_table(
            ORIGINS,
            sa.Column("table_name", sa.String(length=63), nullable=False),
            sa.Column("origin", sa.String(length=16), nullable=False),
            sa.Column("revision", sa.String(length=32), nullable=False),
            sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("table_name", name=op.f("pk_schema_table_origins")),
        )
    _record({LEGACY: "adopted" if adopted else "created", ORIGINS: "created"})


def _origins() -> sa.TableClause:
    return sa.table(
        ORIGINS,
        sa.column("table_name", sa.String),
        sa.column("origin", sa.String),
        sa.column("revision", sa.String),
        sa.column("recorded_at", sa.DateTime(timezone=True)),
    )


def _record(origins: dict[str, str]) -> None:
    table = _origins()
    now = datetime.now(UTC)
    op.execute(table.delete().where(table.c.table_name.in_(list(origins))))
    op.bulk_insert(
        table,
        [
            {"table_name": name, "origin": origin, "revision": revision, "recorded_at": now}
            for name, origin in origins.items()
        ],
    )


def removes(bind: sa.Connection) -> list[str]:
    """The tables downgrade() drops: those recorded as created by this revision."""
    if not sa.inspect(bind).has_table(ORIGINS):
        return []
    table = _origins()
    query = sa.select(table.c.table_name).where(
        table.c.origin == "created", table.c.revision == revision
    )
    created = set(bind.execute(query).scalars())
    return [name for name in (LEGACY, ORIGINS) if name in created]


def downgrade() -> None:
    for name in removes(op.get_bind()):
        op.drop_table(name)
