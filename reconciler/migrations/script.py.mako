"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def removes(bind: sa.Connection) -> list[str]:
    """The tables (and `table.column`s) downgrade() drops, for `reconciler db downgrade` to
    report and count before it runs. A table this revision may adopt rather than create must be
    recorded in schema_table_origins, and left out here unless it was created."""
    return []


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
