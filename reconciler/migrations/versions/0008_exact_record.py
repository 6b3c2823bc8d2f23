"""Record with each revision whether it left the tables exactly as its files declare.

`reconcile_revisions.exact_key` is the key of the files (and the rules that read them) when the
apply left every managed provider and route exactly as they declare; `exact_changes` is the
write counter (0007) as that apply left it. While the newest revision's record holds (same key,
same counter), an apply of the same files has nothing to do and need not read either table.
NULL means unknown: the next apply reads and plans everything, as before.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

COLUMNS = ("exact_key", "exact_changes")


def upgrade() -> None:
    with op.batch_alter_table("reconcile_revisions") as batch:
        batch.add_column(sa.Column("exact_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("exact_changes", sa.BigInteger(), nullable=True))


def removes(bind: sa.Connection) -> list[str]:
    """A downgrade drops the record's two columns."""
    return [f"reconcile_revisions.{column}" for column in COLUMNS]


def derived(bind: sa.Connection) -> list[str]:
    """The record holds nothing to lose: without it, an apply reads everything."""
    return [f"reconcile_revisions.{column}" for column in COLUMNS]


def downgrade() -> None:
    with op.batch_alter_table("reconcile_revisions") as batch:
        for column in reversed(COLUMNS):
            batch.drop_column(column)
