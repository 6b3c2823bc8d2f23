"""Count the writes to the providers and routes tables, kept by the database itself.

`reconcile_state.changes` goes up on every write to `llm_provider_configs` or `llm_task_routes`
that did not come from an apply: a hand edit, another tool. A daemon that remembers what it
applied reads this one number to know whether the tables are still as it left them, instead of
scanning both tables, and sees every such write.

- SQLite: a trigger per row written. The database has one writer at a time, so an apply's own
  writes are counted too: they happen inside its transaction, before it reads the counter again.
- PostgreSQL: a trigger per statement (truncation included), which does nothing inside an apply
  (`reconciler.applying` set for its transaction). Per row, a transaction writing many rows would
  update one counter row as often, and each update walks every version left by the ones before.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TABLES = ("llm_provider_configs", "llm_task_routes")
EVENTS = ("insert", "update", "delete")
FUNCTION = "reconciler_count_change"
BUMP = "UPDATE reconcile_state SET changes = changes + 1 WHERE id = 1"


def upgrade() -> None:
    with op.batch_alter_table("reconcile_state") as batch:
        batch.add_column(
            sa.Column("changes", sa.BigInteger(), nullable=False, server_default=sa.text("0"))
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF coalesce(current_setting('reconciler.applying', true), '') <> 'on' THEN
                    {BUMP};
                END IF;
                RETURN NULL;
            END $$
            """
        )
        for table in TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_changes AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
                f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()"
            )
        return
    for table in TABLES:
        for event in EVENTS:
            op.execute(
                f"CREATE TRIGGER {table}_{event}_changes AFTER {event.upper()} ON {table} "
                f"FOR EACH ROW BEGIN {BUMP}; END"
            )


def removes(bind: sa.Connection) -> list[str]:
    """A downgrade drops the counter and the triggers that keep it."""
    return ["reconcile_state.changes"]


def derived(bind: sa.Connection) -> list[str]:
    """The counter holds nothing to lose: a daemon that finds it gone reads everything."""
    return ["reconcile_state.changes"]


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_changes ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")
    else:
        for table in TABLES:
            for event in EVENTS:
                op.execute(f"DROP TRIGGER IF EXISTS {table}_{event}_changes")
    with op.batch_alter_table("reconcile_state") as batch:
        batch.drop_column("changes")
