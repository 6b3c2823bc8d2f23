"""Index the scoring jobs by status and finish time, for the status page's recent throughput.

The daemon counts the jobs finished in the last minutes every few seconds; without the index
that is a scan of every job ever scored.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

INDEX = "ix_scoring_jobs_finished"


def upgrade() -> None:
    op.create_index(INDEX, "scoring_jobs", ["status", "finished_at"])


def removes(bind: sa.Connection) -> list[str]:
    """Nothing a downgrade drops holds data: only an index."""
    return []


def downgrade() -> None:
    op.drop_index(INDEX, table_name="scoring_jobs")
