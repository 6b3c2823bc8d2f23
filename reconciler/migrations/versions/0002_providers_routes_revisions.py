"""Providers, task routes, the generation counter and revisions; backfill the legacy row.

The legacy `ollama_settings` row becomes a provider `ollama` and a `scoring` route, both
`managed_by = 'legacy'` so that config files adopt them explicitly. The backfill inserts only
what is missing, so running it against a partly backfilled database is harmless. The legacy
table is left as it was.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LEGACY_PROVIDER = "ollama"
LEGACY_TASK = "scoring"


def _provenance() -> list[sa.Column[object]]:
    return [
        sa.Column("managed_by", sa.String(length=32), nullable=False),
        sa.Column("spec_hash", sa.String(length=64), nullable=True),
        sa.Column("source_file", sa.String(length=1024), nullable=True),
        sa.Column("source_line", sa.Integer(), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    providers = op.create_table(
        "llm_provider_configs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("protect", sa.Boolean(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        *_provenance(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_llm_provider_configs")),
        sa.UniqueConstraint("name", name=op.f("uq_llm_provider_configs_name")),
    )
    routes = op.create_table(
        "llm_task_routes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task", sa.String(length=63), nullable=False),
        sa.Column("provider", sa.String(length=63), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("protect", sa.Boolean(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("fallbacks", sa.JSON(), nullable=False),
        *_provenance(),
        sa.ForeignKeyConstraint(
            ["provider"],
            ["llm_provider_configs.name"],
            name=op.f("fk_llm_task_routes_provider_llm_provider_configs"),
            onupdate="CASCADE",
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_llm_task_routes")),
        sa.UniqueConstraint("task", name=op.f("uq_llm_task_routes_task")),
    )
    state = op.create_table(
        "reconcile_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconcile_state")),
    )
    op.create_table(
        "reconcile_revisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("user", sa.String(length=255), nullable=True),
        sa.Column("config_digest", sa.String(length=64), nullable=True),
        sa.Column("git_commit", sa.String(length=64), nullable=True),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Integer(), nullable=False),
        sa.Column("adopted", sa.Integer(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconcile_revisions")),
        sa.UniqueConstraint("generation", name=op.f("uq_reconcile_revisions_generation")),
    )
    now = datetime.now(UTC)
    op.bulk_insert(state, [{"id": 1, "generation": 0, "updated_at": now}])
    _backfill(providers, routes, now)


def _backfill(providers: sa.Table, routes: sa.Table, now: datetime) -> None:
    bind = op.get_bind()
    legacy = sa.table(
        "ollama_settings",
        sa.column("id", sa.Integer),
        sa.column("base_url", sa.String),
        sa.column("model", sa.String),
        sa.column("enabled", sa.Boolean),
    )
    row = bind.execute(sa.select(legacy).order_by(legacy.c.id).limit(1)).first()
    if row is None:
        return
    have = bind.execute(
        sa.select(providers.c.name).where(providers.c.name == LEGACY_PROVIDER)
    ).first()
    if have is None:
        bind.execute(
            providers.insert().values(
                name=LEGACY_PROVIDER,
                type="ollama",
                enabled=bool(row.enabled),
                protect=False,
                config=_legacy_config(row.base_url),
                managed_by="legacy",
                created_at=now,
                updated_at=now,
            )
        )
    have = bind.execute(sa.select(routes.c.task).where(routes.c.task == LEGACY_TASK)).first()
    if have is None:
        bind.execute(
            routes.insert().values(
                task=LEGACY_TASK,
                provider=LEGACY_PROVIDER,
                model=row.model,
                enabled=bool(row.enabled),
                required=True,
                protect=False,
                params={},
                fallbacks=[],
                managed_by="legacy",
                created_at=now,
                updated_at=now,
            )
        )


def _legacy_config(base_url: str) -> dict[str, object]:
    # The provider spec with the defaults of its time written out, as config files store it.
    return {
        "endpoint": {
            "base_url": base_url.rstrip("/"),
            "timeout_s": 60.0,
            "connect_timeout_s": 3.0,
            "probe_timeout_s": 2.0,
            "headers": {},
            "api_key": None,
            "verify_tls": True,
        },
        "max_concurrency": 4,
        "keep_alive": "5m",
    }


def removes(bind: sa.Connection) -> list[str]:
    """The tables and columns downgrade() drops, for `reconciler db downgrade` to report."""
    return ["reconcile_revisions", "reconcile_state", "llm_task_routes", "llm_provider_configs"]


def downgrade() -> None:
    op.drop_table("reconcile_revisions")
    op.drop_table("reconcile_state")
    op.drop_table("llm_task_routes")
    op.drop_table("llm_provider_configs")
