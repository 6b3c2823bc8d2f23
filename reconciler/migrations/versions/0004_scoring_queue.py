"""The scoring queue, and a route's prompt and output schema.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("llm_task_routes") as batch:
        batch.add_column(sa.Column("prompt", sa.Text(), nullable=True))
        batch.add_column(sa.Column("output_schema", sa.JSON(), nullable=True))
    op.create_table(
        "scoring_jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task", sa.String(length=63), nullable=False),
        sa.Column("item_id", sa.String(length=255), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=255), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=True),
        sa.Column("provider", sa.String(length=63), nullable=True),
        sa.Column("model", sa.String(length=256), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scoring_jobs")),
        sa.UniqueConstraint("task", "item_id", name=op.f("uq_scoring_jobs_task")),
    )
    op.create_index("ix_scoring_jobs_claim", "scoring_jobs", ["status", "not_before"])


def removes(bind: sa.Connection) -> list[str]:
    """The tables and columns downgrade() drops, for `reconciler db downgrade` to report."""
    return ["scoring_jobs", "llm_task_routes.output_schema", "llm_task_routes.prompt"]


def downgrade() -> None:
    op.drop_index("ix_scoring_jobs_claim", table_name="scoring_jobs")
    op.drop_table("scoring_jobs")
    with op.batch_alter_table("llm_task_routes") as batch:
        batch.drop_column("output_schema")
        batch.drop_column("prompt")
