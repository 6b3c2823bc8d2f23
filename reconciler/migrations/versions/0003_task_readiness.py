"""The task_readiness table: the latest readiness verdict of each task.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_readiness",
        sa.Column("task", sa.String(length=63), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("remedy", sa.Text(), nullable=False),
        sa.Column("provider", sa.String(length=63), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("served_by", sa.String(length=320), nullable=True),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("provider_version", sa.String(length=64), nullable=True),
        sa.Column("warm", sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint("task", name=op.f("pk_task_readiness")),
    )


def removes(bind: sa.Connection) -> list[str]:
    """The tables and columns downgrade() drops, for `reconciler db downgrade` to report."""
    return ["task_readiness"]


def downgrade() -> None:
    op.drop_table("task_readiness")
