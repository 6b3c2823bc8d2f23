"""The state store: reads observed state and writes a plan, with Core statements only.

Writes happen in one transaction under the apply lock (`apply_lock`). A change of k rows writes
k rows, whatever the total.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)

from reconciler.adapters.db.tables import providers, reconcile_state, revisions, routes
from reconciler.core.plan import (
    MANAGED,
    OPTIONAL_ROUTE_FIELDS,
    Action,
    Kind,
    Observed,
    Op,
    Plan,
    essence_hash,
    route_essence,
)

_CHUNK = 500
# Only what the essences need: timestamps and provenance cost a parse per row to read.
_PROVIDER_COLUMNS = ("name", "type", "enabled", "protect", "config", "managed_by", "spec_hash")
_ROUTE_FIELDS = (
    "provider",
    "model",
    "enabled",
    "required",
    "protect",
    "params",
    "fallbacks",
    *OPTIONAL_ROUTE_FIELDS,
)


@dataclass(frozen=True, slots=True)
class RevisionInfo:
    """Who applied what, recorded with each apply that changed something."""

    host: str
    pid: int
    user: str | None
    config_digest: str | None
    git_commit: str | None


def read_observed(conn: Connection) -> list[Observed]:
    """Every provider and route row, as essences."""
    return _providers_observed(conn, None) + _routes_observed(conn, None)


def read_observed_keys(conn: Connection, keys: Iterable[tuple[Kind, str]]) -> list[Observed]:
    """The rows of `keys` that exist, as essences."""
    names = sorted(key for kind, key in keys if kind is Kind.provider)
    tasks = sorted(key for kind, key in keys if kind is Kind.route)
    observed: list[Observed] = []
    for start in range(0, len(names), _CHUNK):
        observed += _providers_observed(conn, names[start : start + _CHUNK])
    for start in range(0, len(tasks), _CHUNK):
        observed += _routes_observed(conn, tasks[start : start + _CHUNK])
    return observed


def _providers_observed(conn: Connection, names: list[str] | None) -> list[Observed]:
    query = select(*(providers.c[n] for n in _PROVIDER_COLUMNS))
    if names is not None:
        query = query.where(providers.c.name.in_(names))
    return [
        Observed(
            Kind.provider,
            row.name,
            {
                "type": row.type,
                "enabled": row.enabled,
                "protect": row.protect,
                "config": row.config,
            },
            row.managed_by,
            row.spec_hash,
        )
        for row in conn.execute(query)
    ]


def _routes_observed(conn: Connection, tasks: list[str] | None) -> list[Observed]:
    query = select(*(routes.c[n] for n in ("task", *_ROUTE_FIELDS, "managed_by", "spec_hash")))
    if tasks is not None:
        query = query.where(routes.c.task.in_(tasks))
    return [
        Observed(
            Kind.route,
            row[0],
            route_essence(dict(zip(_ROUTE_FIELDS, row[1:-2], strict=True))),
            row[-2],
            row[-1],
        )
        for row in conn.execute(query)
    ]


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What says whether the providers and routes tables are as an apply left them.

    `generation` changes with every apply that writes; `changes` with every write to either table
    that did not come from an apply (a hand edit, another tool), counted by the database's own
    triggers (migration 0007). On SQLite an apply's own writes are counted too: it is the only
    writer while its transaction lasts, so what it reads at its end is its own.
    """

    generation: int
    changes: int


@dataclass(frozen=True, slots=True)
class ExactRecord:
    """What a revision says of the tables it left: every managed row exactly as the files of
    `key` declare (`reconcile.exact_key`), with the write counter at `changes`. Any write since
    moved the generation (an apply, which records its own) or the counter (anything else)."""

    key: str
    changes: int


def exact_record(conn: Connection, generation: int) -> ExactRecord | None:
    """The record of revision `generation`, when it has one; one row read by key."""
    row = conn.execute(
        select(revisions.c.exact_key, revisions.c.exact_changes).where(
            revisions.c.generation == generation
        )
    ).one_or_none()
    if row is None or row[0] is None or row[1] is None:
        return None
    return ExactRecord(str(row[0]), int(row[1]))


# The triggers that keep `reconcile_state.changes` (migration 0007), by engine.
_COUNTED = ("llm_provider_configs", "llm_task_routes")
_EVENTS = ("insert", "update", "delete")
_SQLITE_TRIGGERS = tuple(f"{t}_{e}_changes" for t in _COUNTED for e in _EVENTS)
_POSTGRESQL_TRIGGERS = tuple(f"{t}_changes" for t in _COUNTED)


def counter_armed(conn: Connection) -> bool:
    """Whether every trigger that counts writes to the providers and routes tables is there and
    fires in an ordinary session: a table rebuilt by another tool, or a trigger disabled, would
    let writes go uncounted."""
    if conn.dialect.name == "postgresql":
        query = text(
            "SELECT count(*) FROM pg_trigger WHERE tgname IN :names AND tgenabled IN ('O', 'A')"
        ).bindparams(bindparam("names", expanding=True))
        found = conn.execute(query, {"names": list(_POSTGRESQL_TRIGGERS)}).scalar_one()
        return int(found) == len(_POSTGRESQL_TRIGGERS)
    query = text(
        "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name IN :names"
    ).bindparams(bindparam("names", expanding=True))
    found = conn.execute(query, {"names": list(_SQLITE_TRIGGERS)}).scalar_one()
    return int(found) == len(_SQLITE_TRIGGERS)


def unmanaged_keys(conn: Connection) -> list[tuple[Kind, str]]:
    """The rows that reconciler does not manage, sorted."""
    keys = [
        (Kind.provider, str(name))
        for name in conn.scalars(select(providers.c.name).where(providers.c.managed_by != MANAGED))
    ]
    keys += [
        (Kind.route, str(task))
        for task in conn.scalars(select(routes.c.task).where(routes.c.managed_by != MANAGED))
    ]
    return sorted(keys)


def fingerprint(conn: Connection) -> Fingerprint:
    """One row read, however large the tables."""
    row = conn.execute(
        select(reconcile_state.c.generation, reconcile_state.c.changes).where(
            reconcile_state.c.id == 1
        )
    ).one_or_none()
    return Fingerprint(0, 0) if row is None else Fingerprint(int(row[0]), int(row[1]))


def counts_others_only(conn: Connection) -> bool:
    """True when an apply's own writes leave `Fingerprint.changes` alone (PostgreSQL): a
    different count at its end is another writer's."""
    return conn.dialect.name == "postgresql"


def written_by_another(conn: Connection, start: Fingerprint, end: Fingerprint) -> bool:
    """Whether another writer wrote to the tables while an apply ran, from its fingerprints at
    its start and its end (on SQLite nobody else can: it has one writer at a time)."""
    return counts_others_only(conn) and end.changes != start.changes


@dataclass(frozen=True, slots=True)
class TableCounts:
    rows: int  # providers and routes
    managed: int  # of them, those reconciler manages


def table_counts(conn: Connection) -> TableCounts:
    """How many rows both tables hold, and how many of them are managed."""
    rows = managed = 0
    for table in (providers, routes):
        is_managed = func.count().filter(table.c.managed_by == MANAGED)
        row = conn.execute(select(func.count(), is_managed).select_from(table)).one()
        rows, managed = rows + int(row[0]), managed + int(row[1])
    return TableCounts(rows, managed)


def current_generation(conn: Connection) -> int:
    value = conn.execute(select(reconcile_state.c.generation).where(reconcile_state.c.id == 1))
    return int(value.scalar_one_or_none() or 0)


def write_plan(conn: Connection, plan: Plan, generation: int, now: datetime) -> None:
    """Write every action of `plan`: providers first, then routes, provider deletes last."""
    by_step: dict[tuple[Kind, Op], list[Action]] = {}
    for action in plan.actions:
        by_step.setdefault((action.kind, action.op), []).append(action)
    steps = [
        (Kind.provider, Op.create),
        (Kind.provider, Op.adopt),
        (Kind.provider, Op.update),
        (Kind.route, Op.delete),
        (Kind.route, Op.create),
        (Kind.route, Op.adopt),
        (Kind.route, Op.update),
        (Kind.provider, Op.delete),
    ]
    for kind, op in steps:
        actions = by_step.get((kind, op))
        if actions:
            _write(conn, kind, op, actions, generation, now)


def _write(
    conn: Connection,
    kind: Kind,
    op: Op,
    actions: Sequence[Action],
    generation: int,
    now: datetime,
) -> None:
    table, key_column = (providers, "name") if kind is Kind.provider else (routes, "task")
    if op is Op.delete:
        keys = [a.key for a in actions]
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            conn.execute(delete(table).where(table.c[key_column].in_(chunk)))
        return
    rows = [_row(kind, a, generation, now) for a in actions]
    if op is Op.create:
        conn.execute(
            insert(table),
            [
                {key_column: a.key, **r, "created_at": now}
                for a, r in zip(actions, rows, strict=True)
            ],
        )
        return
    statement = (
        update(table)
        .where(table.c[key_column] == bindparam("_key"))
        .values({name: bindparam(name) for name in rows[0]})
    )
    conn.execute(statement, [{"_key": a.key, **r} for a, r in zip(actions, rows, strict=True)])


def _row(kind: Kind, action: Action, generation: int, now: datetime) -> dict[str, Any]:
    essence = action.essence
    assert essence is not None
    if kind is Kind.provider:
        content = {k: essence[k] for k in ("type", "enabled", "protect", "config")}
    else:
        content = {k: essence.get(k) for k in _ROUTE_FIELDS}
    return {
        **content,
        "managed_by": MANAGED,
        "spec_hash": essence_hash(essence),
        "source_file": action.source_file,
        "source_line": action.source_line,
        "generation": generation,
        "updated_at": now,
    }


def bump_generation(conn: Connection, now: datetime) -> int:
    """The generation after this apply's, counted up; on PostgreSQL in the same round trip."""
    bump = (
        update(reconcile_state)
        .where(reconcile_state.c.id == 1)
        .values(generation=reconcile_state.c.generation + 1, updated_at=now)
    )
    if conn.dialect.name == "postgresql":
        bumped = conn.execute(bump.returning(reconcile_state.c.generation)).scalar_one_or_none()
        return int(bumped or 0)  # as current_generation reads a missing row
    conn.execute(bump)
    return current_generation(conn)


def record_revision(
    conn: Connection,
    plan_document: dict[str, Any],
    plan: Plan,
    generation: int,
    info: RevisionInfo,
    summary: str,
    now: datetime,
    exact: ExactRecord | None = None,
) -> None:
    conn.execute(
        insert(revisions).values(
            generation=generation,
            applied_at=now,
            host=info.host,
            pid=info.pid,
            user=info.user,
            config_digest=info.config_digest,
            git_commit=info.git_commit,
            created=plan.count(Op.create),
            updated=plan.count(Op.update),
            deleted=plan.count(Op.delete),
            adopted=plan.count(Op.adopt),
            plan=plan_document,
            summary=summary,
            exact_key=exact.key if exact else None,
            exact_changes=exact.changes if exact else None,
        )
    )


_RECORD_COLUMNS = ("exact_key", "exact_changes")  # bookkeeping, not history


def list_revisions(conn: Connection, limit: int) -> list[dict[str, Any]]:
    shown = [column for column in revisions.c if column.name not in _RECORD_COLUMNS]
    query = select(*shown).order_by(revisions.c.generation.desc()).limit(limit)
    return [dict(row._mapping) for row in conn.execute(query)]
