"""The single-row ollama_settings table that older deployments have.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Older deployments created this table themselves; adopt it as it is when present.
    if sa.inspect(op.get_bind()).has_table("ollama_settings"):
        return
    op.create_table(
        "ollama_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("base_url", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ollama_settings")),
    )


def downgrade() -> None:
    op.drop_table("ollama_settings")
