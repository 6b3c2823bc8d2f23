"""validate -> observe -> plan -> apply: one code path for the CLI, CI and the daemon."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import Engine

from reconciler import render
from reconciler.adapters.db import migrate, store
from reconciler.adapters.files import load_sources
from reconciler.core.config import ConfigLoader, DesiredState, paused_gc
from reconciler.core.plan import (
    Kind,
    Op,
    Plan,
    desired_items,
    make_plan,
    recheck_saved,
    state_digest,
    without_pure_drift,
)
from reconciler.core.plan_doc import plan_document
from reconciler.core.registry import ProviderRegistry
from reconciler.core.spec import RouteSpec
from reconciler.errors import StalePlan, StateError, UnsafePlan

DIRTY = "-dirty"  # after the commit, as `git describe --dirty` writes it
COMMIT_WIDTH = 64  # the width of the revisions table's `git_commit` column


@dataclass(frozen=True, slots=True)
class ApplyResult:
    plan: Plan
    generation: int
    applied: bool


def load_config(
    paths: list[Path], loader: ConfigLoader, env: Mapping[str, str] | None = None
) -> DesiredState:
    """Read and validate the config files; raises `ConfigInvalid`."""
    return loader.load(load_sources(paths), env=env)


def require_schema(engine: Engine) -> None:
    """Refuse a database whose schema is not the one this code expects."""
    migrate.require_current(engine)


def plan(engine: Engine, state: DesiredState, *, allow_mass_delete: bool = False) -> Plan:
    """The plan from the files' state to the database's, read without a lock, with every
    refusal `apply` would make."""
    migrate.require_current(engine)
    with paused_gc(), engine.connect() as conn:
        observed = store.read_observed(conn)
        return make_plan(
            desired_items(state), observed, state.digest, allow_mass_delete=allow_mass_delete
        )


def apply(
    engine: Engine,
    state: DesiredState | None,
    *,
    saved: Plan | None = None,
    allow_mass_delete: bool = False,
    lock_timeout: float = 30.0,
    config_dir: Path | None = None,
    registry: ProviderRegistry | None = None,
    leave_drift: bool = False,
) -> ApplyResult:
    """Apply the files' state (or exactly a saved plan) in one locked transaction.

    Re-plans inside the lock; writes nothing at all when nothing changed; refuses a saved plan
    made against another state, and plans that the guards refuse.
    """
    migrate.require_current(engine)
    if saved is not None:
        check_saved_content(saved, registry or ProviderRegistry())
    # Before the lock: asking git can take seconds on a large repository.
    digest = saved.config_digest if saved is not None else state.digest if state else ""
    who = _who(digest, config_dir)
    with paused_gc(), store.apply_transaction(engine, lock_timeout) as conn:
        observed = store.read_observed(conn)
        if saved is not None:
            current = state_digest(observed)
            if current != saved.base_digest:
                raise StalePlan(
                    "the saved plan is stale: the database changed since it was made; "
                    "run `reconciler plan --out FILE` again"
                )
            the_plan = recheck_saved(saved, observed, allow_mass_delete=allow_mass_delete)
        else:
            assert state is not None
            items = desired_items(state)
            the_plan = make_plan(items, observed, state.digest, allow_mass_delete=allow_mass_delete)
            if leave_drift:
                the_plan = without_pure_drift(the_plan, observed)
        if the_plan.refusals:
            raise UnsafePlan("; ".join(map(str, the_plan.refusals)))
        if not the_plan.has_changes:
            return ApplyResult(the_plan, store.current_generation(conn), applied=False)
        now = datetime.now(UTC)
        generation = store.bump_generation(conn, now)
        store.write_plan(conn, the_plan, generation, now)
        store.record_revision(
            conn,
            plan_document(the_plan),
            the_plan,
            generation,
            who,
            summary_line(the_plan),
            now,
        )
    return ApplyResult(the_plan, generation, applied=True)


def check_saved_content(saved: Plan, registry: ProviderRegistry) -> None:
    """Every row a saved plan would write must be a valid spec: the file may have been edited.

    The same models as the config files: types, the URL policy, secrets only as references.
    """
    for action in saved.actions:
        if action.op is Op.delete or action.essence is None:
            continue
        essence = action.essence
        try:
            if action.kind is Kind.route:
                RouteSpec.model_validate(essence)
            else:
                provider_type = registry.get(str(essence.get("type")))
                if provider_type is None:
                    raise StateError(
                        f"the saved plan's provider {action.key!r} has an unknown type; "
                        "make the plan again with `reconciler plan --out FILE`"
                    )
                head = {k: essence.get(k) for k in ("type", "enabled", "protect")}
                provider_type.config_model.model_validate({**essence.get("config", {}), **head})
        except (ValidationError, AttributeError, TypeError):
            raise StateError(
                f"the saved plan's {action.kind.value} {action.key!r} is not a valid spec "
                "(the file was edited or damaged); make the plan again with "
                "`reconciler plan --out FILE`"
            ) from None


def summary_line(the_plan: Plan) -> str:
    """`Plan: 1 to create, 2 to update, 0 to delete, 40 unchanged.`, as `plan` prints it."""
    return render.summary_line(the_plan)


def _who(config_digest: str, config_dir: Path | None) -> store.RevisionInfo:
    try:
        user: str | None = getpass.getuser()
    except (KeyError, OSError):
        user = None
    return store.RevisionInfo(
        host=socket.gethostname(),
        pid=os.getpid(),
        user=user,
        config_digest=config_digest,
        git_commit=git_commit(config_dir) if config_dir else None,
    )


def git_commit(directory: Path) -> str | None:
    """The commit checked out in `directory`'s repository, `-dirty` after it when the files
    under `directory` differ from it (changed, staged or untracked)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if not dirty:
        return head
    return head[: COMMIT_WIDTH - len(DIRTY)] + DIRTY  # a SHA-256 commit, shortened to fit


def split_commit(recorded: str | None) -> tuple[str | None, bool | None]:
    """A recorded commit as (commit, dirty); (None, None) when none was recorded.

    Older versions wrote `+dirty`; it reads the same.
    """
    if not recorded:
        return None, None
    for suffix in (DIRTY, "+dirty"):
        if recorded.endswith(suffix):
            return recorded.removesuffix(suffix), True
    return recorded, False
