"""The reconcile worker: coalesce triggers, wait for the files to settle, validate, apply.

Level-based: whatever woke it (a file event, the resync timer, start-up), it re-reads the whole
directory (unchanged files come from the loader's cache). Between cycles it keeps the view of its
last apply (`reconcile.AppliedView`): while the database's fingerprint is unchanged, an edit plans
only what the changed files declare or declared; the resync timer plans against everything.

An invalid edit keeps the last good config in place and is reported once per distinct content;
a missing directory is "source missing", never "delete everything"; the mass-deletion guard
always holds.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from reconciler.core.config import ConfigLoader, DesiredState
from reconciler.core.plan import Op, Plan
from reconciler.daemon.metrics import Metrics
from reconciler.daemon.state import CurrentError, DaemonState, LastApply, now
from reconciler.errors import (
    ConfigInvalid,
    LockTimeout,
    Problem,
    SchemaMismatch,
    StateError,
    TemporaryError,
    UnsafePlan,
)
from reconciler.problem_report import problems_text
from reconciler.render import SIGNS, action_line
from reconciler.service import follow, heap, reconcile
from reconciler.service.database import error_reason
from reconciler.service.follow import Sources

log = logging.getLogger(__name__)

DELETE_SETTLE_S = 1.0  # deletions wait until the files have been unchanged this long
RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)
SHOWN_CHANGES = 50  # on the status page
LOGGED_CHANGES = 20  # in the log, one line each
LOCK_SLICE_S = 0.5  # the longest a stop waits for an apply that waits for the lock


@dataclass(frozen=True)
class WorkerOptions:
    resync_s: float = 60.0
    drift: str = "correct"  # or "report"
    lock_timeout_s: float = 10.0


class ReconcileWorker:
    def __init__(
        self,
        engine: Engine,
        config_dir: Path,
        loader: ConfigLoader,
        state: DaemonState,
        metrics: Metrics,
        options: WorkerOptions,
        is_leader: Callable[[], bool],
    ) -> None:
        self.engine = engine
        self.config_dir = config_dir
        self.loader = loader
        self.state = state
        self.metrics = metrics
        self.options = options
        self.is_leader = is_leader
        self._wake = asyncio.Event()
        self._resync = False
        self._failures = 0
        self._reported: str | None = None  # the content whose problem was last logged
        self._changed_at = 0.0  # when the files' content last changed (monotonic)
        # What the files declared at the last apply: a deletion needs one of its keys to be
        # gone, and the resync timer compares the rows with it.
        self._applied_state: DesiredState | None = None
        self._waiting: str | None = None  # the content whose deletions were last said to wait
        self.view = reconcile.AppliedView()
        # Called after every apply with the rows it wrote: (kind, name).
        self.on_applied: Callable[[set[tuple[str, str]]], None] = lambda changed: None
        self.cycles = 0
        self.drift_checks = 0  # comparisons the resync timer completed

    def poke(self, resync: bool = False) -> None:
        """Something may have changed: reconcile soon."""
        self._resync = self._resync or resync
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _first(self._wake.wait(), stop.wait())
            if stop.is_set():
                return
            error = self.state.error
            known = None if self._resync or error is not None else self.state.applied_digest
            found = await follow.settled(self.config_dir, self._wake, stop, self.loader, known)
            if stop.is_set():
                return
            resync, self._resync = self._resync, False
            retry = await self.cycle(found.sources, resync, found.digest, found.loading)
            self.cycles += 1
            if retry is not None:
                asyncio.get_running_loop().call_later(retry, self.poke, True)

    async def resync_timer(self, stop: asyncio.Event) -> None:
        """Every `resync_s` (jittered): read the files again, in case an event was missed, and
        compare every row with what was last applied, to find and fix drift.

        The comparison runs beside the worker, not in its turn: an edit saved meanwhile is
        applied at once instead of waiting for a full read of the tables. Only a difference
        makes the worker resync (plan everything under the apply lock, then correct or report).
        """
        while not stop.is_set():
            delay = self.options.resync_s * random.uniform(0.9, 1.1)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                self.poke()
                if await self._differs():
                    self.poke(resync=True)
                heap.settle()  # here, rather than in the middle of the next edit

    async def _differs(self) -> bool:
        """Whether the database may differ from what the files declared at the last apply:
        True when any row does, when nothing was applied yet, while drift is reported (only a
        resync clears it), and when the read fails (the resync then meets the error and
        reports it)."""
        if not self.is_leader():
            return False
        applied = self._applied_state
        if applied is None or self.state.drift:  # drift reported: a resync says if it is gone
            return True
        try:
            the_plan = await asyncio.to_thread(reconcile.plan, self.engine, applied)
        except Exception:  # the worker's resync reports whatever this was
            return True
        self.drift_checks += 1
        return the_plan.has_changes

    async def cycle(
        self,
        sources: Sources,
        resync: bool,
        digest: str | None = None,
        loading: asyncio.Task[DesiredState] | None = None,
    ) -> float | None:
        """One reconcile of `sources` (whose `follow.digest` is `digest`, and whose load is
        `loading`, when the caller has them); returns a delay after which to retry, or None."""
        started = time.perf_counter()
        try:
            if sources is None:
                self._report("source_missing", follow.missing_message(self.config_dir), "missing")
                return None
            if isinstance(sources, ConfigInvalid):
                self.state.config_digest = follow.digest(sources)
                raise sources
            digest = digest or follow.digest(sources)
            if digest != self.state.config_digest:
                self._changed_at = time.monotonic()
            self.state.config_digest = digest
            if digest == self.state.applied_digest and not resync and self.state.error is None:
                await follow.discard(loading)
                return None  # an event that changed nothing: same bytes as applied
            if loading is not None:  # validated while the files settled
                desired = await loading
            else:
                desired = await asyncio.to_thread(follow.load, self.loader, sources)
            self.metrics.config_valid.set(1)
            wait = await self._reconcile(desired, digest, resync)
            if wait is not None:
                return wait
        except ConfigInvalid as exc:
            self.metrics.config_valid.set(0)
            digest = self.state.config_digest or "?"
            message = f"{len(exc.problems)} problem(s) in the config files; keeping the last good"
            self._report("invalid", message, digest, exc.problems)
        except UnsafePlan as exc:
            message = f"nothing was applied: {exc}"
            self._report("refused", message, self.state.config_digest or "?")
        except SchemaMismatch as exc:
            self._report("schema", str(exc), "schema")
            return RETRY_S[-1]
        except (TemporaryError, DBAPIError, StateError) as exc:
            return self._failed(exc)
        finally:
            self.metrics.duration.observe(time.perf_counter() - started)
        self._failures = 0
        return None

    async def _deletions_wait(self, desired: DesiredState) -> float | None:
        """Seconds to wait before a plan that deletes rows may be applied, or None.

        A half-written file can be valid YAML with entries missing. Creates and updates apply at
        once; deletions wait until the files have stayed unchanged for DELETE_SETTLE_S, and are
        then planned again from what is on disk.
        """
        remaining = DELETE_SETTLE_S - (time.monotonic() - self._changed_at)
        if remaining <= 0:
            return None
        applied = self._applied_state
        if applied is not None and (
            applied.providers.keys() <= desired.providers.keys()
            and applied.routes.keys() <= desired.routes.keys()
        ):
            return None  # nothing the files declared before is gone: no deletion to hold
        plan = await asyncio.to_thread(reconcile.plan, self.engine, desired)
        deletes = plan.count(Op.delete)
        if not deletes:
            return None
        if desired.digest != self._waiting:  # once per content, not on every event meanwhile
            self._waiting = desired.digest
            log.info("%d deletion(s) wait %.1fs for the files to settle", deletes, remaining)
        return remaining

    async def _reconcile(self, desired: DesiredState, digest: str, resync: bool) -> float | None:
        if not self.is_leader():  # the files are valid; applying them is the leader's job
            self.state.error = None
            self.state.reconciled_once = True
            self.metrics.runs.labels("follower").inc()
            return None
        if resync and self.options.drift == "report":
            plan = await asyncio.to_thread(reconcile.plan, self.engine, desired)
            self._note_drift(plan)
            # Only drift is left alone; changes of the files (and the first apply) go ahead.
            if plan.has_changes and all(a.drift for a in plan.actions):
                self.metrics.runs.labels("drift_reported").inc()
                self._done(digest, None)
                return None
        wait = await self._deletions_wait(desired)
        if wait is not None:
            return wait
        if resync:
            self.view.forget()  # the resync reads everything, to find drift the view can't see
        result = await self._apply(desired)
        if result is None:  # stopping before the lock came free: nothing was written
            return None
        self.state.generation = result.generation
        self.metrics.generation.set(result.generation)
        if result.applied:
            self._applied(result.plan, result.generation)
            self.on_applied({(action.kind.value, action.key) for action in result.plan.actions})
        else:
            self.metrics.runs.labels("unchanged").inc()
        self._done(digest, result.plan)
        self._applied_state = desired
        return None

    async def _apply(self, desired: DesiredState) -> reconcile.ApplyResult | None:
        """Apply, waiting for the lock in short slices so that a stop never waits on it.

        A thread blocked on the lock cannot be interrupted, and the process cannot exit before
        it ends; so each attempt waits at most LOCK_SLICE_S. None when stopping.
        """
        deadline = time.monotonic() + self.options.lock_timeout_s
        while True:
            try:
                return await asyncio.to_thread(
                    reconcile.apply,
                    self.engine,
                    desired,
                    allow_mass_delete=False,
                    lock_timeout=max(0.0, min(LOCK_SLICE_S, deadline - time.monotonic())),
                    config_dir=self.config_dir,
                    leave_drift=self.options.drift == "report",
                    view=self.view,
                )
            except LockTimeout as exc:
                if self.state.stopping:
                    return None
                if time.monotonic() >= deadline:
                    waited = self.options.lock_timeout_s
                    raise LockTimeout(f"{exc}; waited {waited:g}s in all") from None

    def _applied(self, plan: Plan, generation: int) -> None:
        summary = reconcile.summary_line(plan)
        changes = [action_line(a, self.config_dir) for a in plan.actions[:SHOWN_CHANGES]]
        self.state.last_apply = LastApply(now(), generation, summary, changes)
        for op in Op:
            if count := plan.count(op):
                self.metrics.changes.labels(op.value).inc(count)
        drifted = [a for a in plan.actions if a.drift]
        if drifted:
            self.metrics.drift_corrected.inc(len(drifted))
            rows = ", ".join(f"{a.kind.value} {a.key}" for a in drifted[:LOGGED_CHANGES])
            more = (
                f" and {len(drifted) - LOGGED_CHANGES} more"
                if len(drifted) > LOGGED_CHANGES
                else ""
            )
            log.warning(
                "corrected drift on %d row(s) changed outside the files: %s%s",
                len(drifted),
                rows,
                more,
            )
        self.metrics.runs.labels("applied").inc()
        log.info("applied generation %d: %s", generation, summary)
        for action in plan.actions[:LOGGED_CHANGES]:
            log.info("  %s", action_line(action, self.config_dir))
        if len(plan.actions) > LOGGED_CHANGES:
            log.info(
                "  and %d more change(s): `reconciler history` lists them",
                len(plan.actions) - LOGGED_CHANGES,
            )

    def _note_drift(self, plan: Plan) -> None:
        drift = [f"{SIGNS[a.op]} {a.kind.value} {a.key}" for a in plan.actions if a.drift]
        if drift and drift != self.state.drift:
            log.warning("drift: %d row(s) differ from the files (--drift=report)", len(drift))
        self.state.drift = drift

    def _done(self, digest: str, plan: Plan | None) -> None:
        if self.state.error is not None:
            log.info("the config files are applied again; the earlier problem is resolved")
        self.state.error = None
        self._reported = None
        self.state.applied_digest = digest
        self.state.reconciled_once = True
        self.state.last_success_at = now()
        self.metrics.last_success.set(time.time())
        if plan is not None:  # applied (or nothing to apply): no drift is left
            self.state.drift = []

    def _report(
        self, kind: str, message: str, content: str, problems: Sequence[Problem] = ()
    ) -> None:
        """Record the problem; log it once per distinct content, not on every cycle."""
        key = f"{kind}:{content}"
        if self.state.error is None or self.state.error.kind != kind:
            self.state.error = CurrentError(kind, message, now(), list(problems))
        else:
            self.state.error.message = message
            self.state.error.problems = list(problems)
        self.metrics.runs.labels(kind).inc()
        if key == self._reported:
            return
        self._reported = key
        log.error("%s", message)
        for line in problems_text(problems[:20]).splitlines():
            log.error("  %s", line)
        if len(problems) > 20:
            log.error(
                "  ... and %d more; see the status page or `reconciler validate`",
                len(problems) - 20,
            )

    def _failed(self, exc: Exception) -> float:
        delay = RETRY_S[min(self._failures, len(RETRY_S) - 1)]
        self._failures += 1
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, DBAPIError):
            reason = "database error: " + error_reason(exc)
        self.state.error = CurrentError("database", f"{reason}; retrying in {delay:g}s", now())
        self.metrics.runs.labels("error").inc()
        log.warning("reconcile failed: %s; retrying in %gs", reason, delay)
        return delay


async def _first(*waits: object) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]  # type: ignore[call-overload]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
