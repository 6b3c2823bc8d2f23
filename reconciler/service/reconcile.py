"""validate -> observe -> plan -> apply: one code path for the CLI, CI and the daemon.

`load_config` (the files, validated) is `reconciler.service.config`'s, named here too.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
import subprocess
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import Connection, Engine

from reconciler import render
from reconciler.adapters.db import revision, store
from reconciler.adapters.db.apply_lock import apply_transaction
from reconciler.adapters.db.leader import Leadership, leadership_for
from reconciler.adapters.files import paused_gc
from reconciler.adapters.rules import code_digest
from reconciler.core.config import DesiredState
from reconciler.core.plan import (
    Kind,
    Observed,
    Op,
    Plan,
    declared_by_file,
    desired_items,
    desired_subset,
    make_plan,
    nothing_to_do,
    recheck_saved,
    same_item,
    state_digest,
    without_pure_drift,
)
from reconciler.core.plan_doc import plan_document
from reconciler.core.registry import ProviderRegistry
from reconciler.core.spec import RouteSpec
from reconciler.errors import StalePlan, StateError, UnsafePlan
from reconciler.service.config import load_config  # noqa: F401  (re-exported)

DIRTY = "-dirty"  # after the commit, as `git describe --dirty` writes it
COMMIT_WIDTH = 64  # the width of the revisions table's `git_commit` column


@dataclass(frozen=True, slots=True)
class ApplyResult:
    plan: Plan
    generation: int
    applied: bool


def require_schema(engine: Engine) -> None:
    """Refuse a database whose schema is not the one this code expects."""
    revision.require_current(engine)


def leadership(engine: Engine) -> Leadership:
    """Which of the daemons sharing `engine`'s database applies the files: one leader at a time,
    the others serve status (`adapters.db.leader` says how, on each engine)."""
    return leadership_for(engine)


def plan(
    engine: Engine, state: DesiredState, *, allow_mass_delete: bool = False, by_record: bool = False
) -> Plan:
    """The plan from the files' state to the database's, read without a lock, with every
    refusal `apply` would make.

    With `by_record`, a database whose newest revision records that it holds exactly these files
    (`exact_key`) and has not been written since answers "nothing to do" without reading and
    comparing the rows; that plan's `base_digest` is empty, so a caller that shows or saves the
    digest (JSON, a saved plan) leaves `by_record` off.
    """
    with paused_gc(), engine.connect() as conn:
        revision.require_current(conn)
        recorded = _recorded_plan(conn, state, store.fingerprint(conn)) if by_record else None
        if recorded is not None:
            return recorded
        observed = store.read_observed(conn)
        return make_plan(
            desired_items(state), observed, state.digest, allow_mass_delete=allow_mass_delete
        )


class AppliedView:
    """What the last apply left in the database, kept by a long-running caller between applies.

    It holds the state that apply applied (its files, what each declared, each item's essence)
    and the database's fingerprint at that apply's end: the generation, and the count of writes
    to the providers and routes tables that the database's own triggers keep. While the
    fingerprint is the same, the rows are as that apply left them, so the next plan need only
    cover the items that the changed files declare or declared and that the change did not leave
    as they were (an edit of one route in a file of a thousand plans one route); those rows are
    read again, by key. Any other fingerprint (another apply; a hand edit or another tool, each
    counted), a write by another transaction while an apply runs, an error, or `forget()` means
    the next apply reads and plans everything. The periodic resync, which calls `forget()`
    first, reads everything anyway.
    """

    def __init__(self) -> None:
        self._fingerprint: store.Fingerprint | None = None
        self._state: DesiredState | None = None  # the files as applied
        # Whether every managed row was exactly as the remembered files declare (no drift left).
        self.exact = False
        self.partial_plans = 0  # applies planned from the changed files only
        self.full_plans = 0  # applies that read and planned everything

    def forget(self) -> None:
        """Plan everything next time (a resync, or an error that left the view unknown)."""
        self._fingerprint = self._state = None
        self.exact = False

    def changed_keys(
        self, state: DesiredState, current: store.Fingerprint
    ) -> set[tuple[Kind, str]] | None:
        """What the changed files declare or declared, but for the items they left as they
        were; None when the view is not current."""
        applied = self._state
        if applied is None or current != self._fingerprint:
            return None
        was, now = dict(applied.files), dict(state.files)
        changed = {name for name in was.keys() | now.keys() if was.get(name) != now.get(name)}
        keys: set[tuple[Kind, str]] = set()
        for side in (applied, state):
            for declared in declared_by_file(side, changed).values():
                keys |= declared
        return {(kind, key) for kind, key in keys if not same_item(applied, state, kind, key)}

    def remember(self, state: DesiredState, current: store.Fingerprint, exact: bool) -> None:
        """`state` is applied and the database's fingerprint is now `current`; `exact` when no
        managed row differs from what the files declare."""
        self._state, self._fingerprint, self.exact = state, current, exact


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
    view: AppliedView | None = None,
    by_record: bool = False,
) -> ApplyResult:
    """Apply the files' state (or exactly a saved plan) in one locked transaction.

    Re-plans inside the lock; writes nothing at all when nothing changed; refuses a saved plan
    made against another state, and plans that the guards refuse. With `view` (kept by the
    caller between applies), plans only what changed files declare while the view is current.
    With `by_record`, as `plan`: the database's record can prove there is nothing to do.
    Every apply that writes records whether it left the rows exactly as the files declare.
    """
    if saved is not None:
        check_saved_content(saved, registry or ProviderRegistry())
    # Before the lock: asking git can take seconds on a large repository.
    digest = saved.config_digest if saved is not None else state.digest if state else ""
    who = _who(digest, config_dir)
    view = view if saved is None else None
    try:
        with paused_gc(), apply_transaction(engine, lock_timeout) as conn:
            revision.require_current(conn)  # on this connection: one round trip, not a second one
            start = store.fingerprint(conn)
            exact = False  # whether the rows will be exactly as the files declare
            if saved is not None:
                the_plan = _saved_plan(conn, saved, allow_mass_delete)
            else:
                assert state is not None
                the_plan, exact = _files_plan(
                    conn, state, start, view, allow_mass_delete, leave_drift, by_record
                )
            if the_plan.refusals:
                raise UnsafePlan("; ".join(map(str, the_plan.refusals)))
            key = exact_key(state) if exact and state is not None else None
            result, after = _write(conn, the_plan, who, start, key)
            if view is not None and state is not None:
                _keep(view, state, after, exact, store.written_by_another(conn, start, after))
    except BaseException:
        if view is not None:
            view.forget()
        raise
    return result


def exact_key(state: DesiredState) -> str | None:
    """The key of `state`'s files and of the rules that validated them (reconciler's version,
    the provider types and their origins, the core's code): the same key, the same rows wanted.
    None for a state that no loader made (nothing to tell it apart by)."""
    if not state.digest or not state.rules:
        return None
    text = f"{state.digest}\0{state.rules}\0{code_digest()}"
    return hashlib.sha256(text.encode()).hexdigest()


def _recorded_plan(conn: Connection, state: DesiredState, start: store.Fingerprint) -> Plan | None:
    """The empty plan, when the newest revision records that the rows are exactly as `state`
    declares and nothing has written to either table since (and the triggers that count such
    writes are all in place); otherwise None."""
    key = exact_key(state)
    if key is None or store.exact_record(conn, start.generation) != store.ExactRecord(
        key, start.changes
    ):
        return None
    if not store.counter_armed(conn):
        return None
    return nothing_to_do(state, store.unmanaged_keys(conn))


def _keep(
    view: AppliedView, state: DesiredState, after: store.Fingerprint, exact: bool, raced: bool
) -> None:
    """Remember `state` as applied, unless another writer wrote while this apply ran."""
    if raced:
        view.forget()  # what it wrote may not be in this apply's view
    else:
        view.remember(state, after, exact)


def _saved_plan(conn: Connection, saved: Plan, allow_mass_delete: bool) -> Plan:
    observed = store.read_observed(conn)
    if state_digest(observed) != saved.base_digest:
        raise StalePlan(
            "the saved plan is stale: the database changed since it was made; "
            "run `reconciler plan --out FILE` again"
        )
    return recheck_saved(saved, observed, allow_mass_delete=allow_mass_delete)


def _files_plan(
    conn: Connection,
    state: DesiredState,
    start: store.Fingerprint,
    view: AppliedView | None,
    allow_mass_delete: bool,
    leave_drift: bool,
    by_record: bool,
) -> tuple[Plan, bool]:
    """The plan of the files' state, from the record or the changed files only when they allow
    it; and whether applying it leaves every managed row exactly as the files declare."""
    if by_record and (recorded := _recorded_plan(conn, state, start)) is not None:
        return recorded, True
    the_plan: Plan | None = None
    if view is not None:
        keys = view.changed_keys(state, start)
        # Rows read by key cost more than a scan: past half the table, read it all (the table
        # is counted only when the change is that large against what the files declare).
        declared = len(state.providers) + len(state.routes)
        if keys is not None and (
            len(keys) * 2 <= declared or len(keys) * 2 <= store.table_counts(conn).rows
        ):
            the_plan, observed = _partial_plan(conn, state, keys, allow_mass_delete)
            exact = view.exact  # the other rows are as the view's last apply left them
    if the_plan is None:
        observed = store.read_observed(conn)
        items = desired_items(state)
        the_plan = make_plan(items, observed, state.digest, allow_mass_delete=allow_mass_delete)
        exact = True
        if view is not None:
            view.full_plans += 1
    elif view is not None:
        view.partial_plans += 1
    if leave_drift:
        kept = without_pure_drift(the_plan, observed)
        exact = exact and len(kept.actions) == len(the_plan.actions)  # drift left in place
        the_plan = kept
    return the_plan, exact


def _partial_plan(
    conn: Connection,
    state: DesiredState,
    keys: set[tuple[Kind, str]],
    allow_mass_delete: bool,
) -> tuple[Plan | None, list[Observed]]:
    """The plan of `keys` alone: the same `make_plan`, with the whole table's managed count
    when it deletes (the mass-deletion guard weighs deletions against every managed row).

    None when it deletes a provider: whether an unmanaged route still uses it is a question
    about every route, so that plan is made from everything.
    """
    observed = store.read_observed_keys(conn, keys)
    items = desired_subset(state, keys)
    wanted = {(item.kind, item.key) for item in items}
    deletes = any(row.managed and (row.kind, row.key) not in wanted for row in observed)
    managed = store.table_counts(conn).managed if deletes else None
    the_plan = make_plan(
        items, observed, state.digest, allow_mass_delete=allow_mass_delete, managed=managed
    )
    if any(a.op is Op.delete and a.kind is Kind.provider for a in the_plan.actions):
        return None, observed
    others = len(state.providers) + len(state.routes) - len(items)
    return replace(the_plan, unchanged=the_plan.unchanged + others), observed


def _write(
    conn: Connection,
    the_plan: Plan,
    who: store.RevisionInfo,
    start: store.Fingerprint,
    key: str | None,
) -> tuple[ApplyResult, store.Fingerprint]:
    """Write the plan, its generation and its revision; nothing at all when it changes nothing.

    The revision records `key` (the rows are now exactly as those files declare) with the write
    counter as this apply leaves it, unless another writer moved the counter meanwhile. Returns
    the database's fingerprint at the end.
    """
    if not the_plan.has_changes:
        return ApplyResult(the_plan, start.generation, applied=False), start
    now = datetime.now(UTC)
    generation = store.bump_generation(conn, now)
    store.write_plan(conn, the_plan, generation, now)
    after = store.fingerprint(conn)
    raced = store.written_by_another(conn, start, after)
    exact = store.ExactRecord(key, after.changes) if key is not None and not raced else None
    store.record_revision(
        conn,
        plan_document(the_plan),
        the_plan,
        generation,
        who,
        summary_line(the_plan),
        now,
        exact,
    )
    return ApplyResult(the_plan, generation, applied=True), after


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
    under `directory` differ from it (changed, staged or untracked); None outside one."""
    if not _maybe_in_repository(directory):
        return None
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


_GIT_ENV = ("GIT_DIR", "GIT_WORK_TREE")  # point git at a repository found no other way


def _maybe_in_repository(directory: Path) -> bool:
    """False when no `.git` is in `directory` or above it (and no GIT_* variable points git
    elsewhere): git would find no repository either, so it is not started. A config directory
    mounted from elsewhere (a Kubernetes ConfigMap, say) then costs no process per apply."""
    if any(name in os.environ for name in _GIT_ENV):
        return True
    try:
        here = directory.resolve()
    except OSError:
        return True
    return any((folder / ".git").exists() for folder in (here, *here.parents))


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
