"""The database schema as SQLAlchemy Core tables. Alembic revisions in migrations/ match it."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

# Stable constraint names, so migrations can refer to them on every engine.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

MANAGED_BY_CONFIG = "config"


def _provenance() -> list[Column[object]]:
    return [
        Column("managed_by", String(32), nullable=False),
        Column("spec_hash", String(64), nullable=True),
        Column("source_file", String(1024), nullable=True),
        Column("source_line", Integer, nullable=True),
        Column("generation", Integer, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    ]


# The table older deployments have; kept readable after the backfill.
ollama_settings = Table(
    "ollama_settings",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("base_url", String, nullable=False),
    Column("model", String, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("updated_at", DateTime, nullable=True),
)

providers = Table(
    "llm_provider_configs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("type", String(64), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("protect", Boolean, nullable=False),
    Column("config", JSON, nullable=False),
    *_provenance(),
)

routes = Table(
    "llm_task_routes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task", String(63), nullable=False, unique=True),
    Column(
        "provider",
        String(63),
        ForeignKey("llm_provider_configs.name", ondelete="RESTRICT", onupdate="CASCADE"),
        nullable=False,
    ),
    Column("model", String(256), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("required", Boolean, nullable=False),
    Column("protect", Boolean, nullable=False),
    Column("params", JSON, nullable=False),
    Column("fallbacks", JSON, nullable=False),
    Column("prompt", Text, nullable=True),
    Column("output_schema", JSON, nullable=True),
    *_provenance(),
)

# One row (id = 1): the generation counter, bumped by every apply that changes something.
reconcile_state = Table(
    "reconcile_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("generation", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # Writes to the providers and routes tables outside an apply, counted by triggers
    # (migration 0007): one number that says whether they are as the last apply left them.
    Column("changes", BigInteger, nullable=False, server_default=text("0")),
)

revisions = Table(
    "reconcile_revisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("generation", Integer, nullable=False, unique=True),
    Column("applied_at", DateTime(timezone=True), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("user", String(255), nullable=True),
    Column("config_digest", String(64), nullable=True),
    Column("git_commit", String(64), nullable=True),
    Column("created", Integer, nullable=False),
    Column("updated", Integer, nullable=False),
    Column("deleted", Integer, nullable=False),
    Column("adopted", Integer, nullable=False),
    Column("plan", JSON, nullable=False),
    Column("summary", Text, nullable=False),
    # Set when this apply left every managed row exactly as the files it applied declare: their
    # key (files and rules, `reconcile.exact_key`) and the write counter as it left it. While
    # both still hold, an apply of the same files has nothing to do (migration 0008).
    Column("exact_key", String(64), nullable=True),
    Column("exact_changes", BigInteger, nullable=True),
)

# The latest readiness verdict of each task, written by whoever probes (daemon or CLI).
task_readiness = Table(
    "task_readiness",
    metadata,
    Column("task", String(63), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("reason", String(32), nullable=True),
    Column("detail", Text, nullable=False),
    Column("remedy", Text, nullable=False),
    Column("provider", String(63), nullable=False),
    Column("model", String(256), nullable=False),
    Column("served_by", String(320), nullable=True),
    Column("required", Boolean, nullable=False),
    Column("generation", Integer, nullable=False),
    Column("checked_at", DateTime(timezone=True), nullable=True),
    Column("latency_ms", Float, nullable=True),
    Column("provider_version", String(64), nullable=True),
    Column("warm", Boolean, nullable=True),
)


# The scoring queue: one row per (task, item), which also holds the item's one result.
scoring_jobs = Table(
    "scoring_jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task", String(63), nullable=False),
    Column("item_id", String(255), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("status", String(16), nullable=False),  # queued | leased | done | dead
    Column("attempts", Integer, nullable=False),
    Column("not_before", DateTime(timezone=True), nullable=False),
    Column("lease_owner", String(255), nullable=True),
    Column("lease_expires_at", DateTime(timezone=True), nullable=True),
    Column("generation", Integer, nullable=True),
    Column("provider", String(63), nullable=True),
    Column("model", String(256), nullable=True),
    Column("result", JSON, nullable=True),
    Column("latency_ms", Float, nullable=True),
    Column("prompt_tokens", Integer, nullable=True),
    Column("completion_tokens", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("task", "item_id"),
    Index("ix_scoring_jobs_claim", "status", "not_before"),
    Index("ix_scoring_jobs_finished", "status", "finished_at"),
)
