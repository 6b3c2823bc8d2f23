"""Record where tables came from on databases that went through 0001 before it did.

0001 records in `schema_table_origins` whether it created `ollama_settings` or adopted a table
that was already there. A database migrated past 0001 before that gets the table here, with no
record for `ollama_settings`: where it came from is unknown, so no downgrade drops it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ORIGINS = "schema_table_origins"


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table(ORIGINS):
        return
    table = op.create_table(
        ORIGINS,
        sa.Column("table_name", sa.String(length=63), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("revision", sa.String(length=32), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("table_name", name=op.f("pk_schema_table_origins")),
    )
    row = {"table_name": ORIGINS, "origin": "created", "revision": revision}
    op.bulk_insert(table, [{**row, "recorded_at": datetime.now(UTC)}])


def removes(bind: sa.Connection) -> list[str]:
    """The table downgrade() drops: `schema_table_origins`, when this revision created it."""
    if not sa.inspect(bind).has_table(ORIGINS):
        return []
    table = sa.table(ORIGINS, sa.column("table_name"), sa.column("origin"), sa.column("revision"))
    query = sa.select(table.c.table_name).where(
        table.c.table_name == ORIGINS, table.c.origin == "created", table.c.revision == revision
    )
    return list(bind.execute(query).scalars())


def downgrade() -> None:
    for name in removes(op.get_bind()):
        op.drop_table(name)
