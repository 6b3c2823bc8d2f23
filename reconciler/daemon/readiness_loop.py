"""The readiness loop: the leader probes and stores; followers read what the leader stored."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from reconciler.core.readiness import SERVABLE, ProbeReport, Reason, Status, Verdict
from reconciler.core.registry import ProviderRegistry
from reconciler.daemon.metrics import Metrics
from reconciler.daemon.state import DaemonState
from reconciler.errors import ReconcilerError
from reconciler.service import readiness

log = logging.getLogger(__name__)


class ReadinessLoop:
    def __init__(
        self,
        engine: Engine,
        registry: ProviderRegistry,
        state: DaemonState,
        metrics: Metrics,
        interval_s: float,
        is_leader: Callable[[], bool],
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.state = state
        self.metrics = metrics
        self.interval_s = interval_s
        self.is_leader = is_leader
        self._wake = asyncio.Event()
        self._logged: dict[str, tuple[Status, str | None]] = {}
        # Each task's series as last published: (status, required); a round touches only the
        # series of the tasks whose verdict changed (10,000 tasks are 20,000 series).
        self._published: dict[str, tuple[str, str]] = {}
        # Rows ((kind, name)) applied since the last round began, and whether every task must
        # be checked all the same (leadership changed, say).
        self._changed: set[tuple[str, str]] = set()
        self._full = True
        self._last_full = -math.inf  # monotonic time of the last round of every task
        self._decided = False  # a round of every task has run: there are verdicts to keep

    def poke(self, changed: Iterable[tuple[str, str]] | None = None) -> None:
        """Check again soon: the tasks that the rows `changed` ((kind, name), as an apply wrote
        them) touch, or every task when None."""
        if changed is None:
            self._full = True
        else:
            self._changed.update(changed)
        self._wake.set()

    def _retry(self, changed: set[tuple[str, str]] | None) -> None:
        """A round that failed is owed: its rows (or every task) go into the next one."""
        if changed is None:
            self._full = True
        else:
            self._changed |= changed

    def _next_round(self) -> set[tuple[str, str]] | None:
        """What the round about to run checks: the rows changed since the last one, or None for
        every task (at start, on a timer, when asked, and at least once an interval)."""
        poked = self._wake.is_set()
        self._wake.clear()
        due = time.monotonic() - self._last_full >= self.interval_s
        full = self._full or not poked or due or not self._decided
        changed = None if full else self._changed
        self._full, self._changed = False, set()
        if full:
            self._last_full = time.monotonic()
        return changed

    async def run(self, stop: asyncio.Event) -> None:
        prober = readiness.Prober()
        try:
            while not stop.is_set():
                changed = self._next_round()
                try:
                    await _unless_stopped(self.round(prober, changed), stop)
                except (ReconcilerError, SQLAlchemyError) as exc:
                    log.warning("readiness check skipped: %s", str(exc).splitlines()[0])
                    self._retry(changed)
                except Exception:  # a bug in one round must not end readiness for good
                    log.exception("readiness check failed; trying again next round")
                    self._retry(changed)
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait(
                    (waiter, stopper), timeout=self.interval_s, return_when=asyncio.FIRST_COMPLETED
                )
                waiter.cancel()
                stopper.cancel()
        finally:
            await prober.aclose()

    async def round_once(self) -> list[Verdict]:
        """One round with its own prober: for `run --once`."""
        prober = readiness.Prober()
        try:
            return await self.round(prober)
        finally:
            await prober.aclose()

    async def round(
        self, prober: readiness.Prober, changed: set[tuple[str, str]] | None = None
    ) -> list[Verdict]:
        """Probe and decide: every task, or when `changed` rows are given (after an apply),
        only the tasks they touch, whose verdicts alone are rewritten."""
        if self.is_leader():
            # Routes alone changed: those routes are all the round needs. A changed provider
            # touches every route that asks it, fallbacks included: those are found among all.
            narrowed = None
            if changed is not None and self._decided and all(k == "route" for k, _ in changed):
                narrowed = {name for _, name in changed}
            inputs = await asyncio.to_thread(
                readiness.inputs_from_database, self.engine, self.registry, narrowed
            )
            if changed is not None and self._decided:
                tasks = readiness.affected_tasks(inputs, changed)
                return self._publish(await self._partial(inputs, tasks, prober), tasks)
            await prober.retain(p.name for p in inputs.providers)  # rows gone: forgotten
            reports = await readiness.probe(inputs, prober)
            self._observe(reports)
            found = readiness.decide(inputs, reports, datetime.now(UTC))
            await asyncio.to_thread(readiness.save, self.engine, found)
            self._decided = True
        else:
            found = await asyncio.to_thread(
                readiness.current, self.engine, self.registry, None, self.interval_s
            )
        return self._publish(found)

    async def _partial(
        self, inputs: readiness.Inputs, tasks: set[str], prober: readiness.Prober
    ) -> list[Verdict]:
        """The verdicts after an apply: the touched `tasks` probed and decided again, every
        other task's verdict kept as the last round left it."""
        kept = [v for v in self.state.verdicts if v.task not in tasks]
        if not tasks:
            return kept
        narrowed = readiness.only(inputs, tasks)
        reports = await readiness.probe(narrowed, prober)
        self._observe(reports)
        found = readiness.decide(narrowed, reports, datetime.now(UTC))
        await asyncio.to_thread(readiness.save_some, self.engine, tasks, found)
        for task in tasks - {v.task for v in found}:
            self._logged.pop(task, None)  # gone: if it comes back, say so again
        return sorted([*kept, *found], key=lambda v: v.task)

    def _observe(self, reports: Mapping[str, ProbeReport]) -> None:
        for name, report in reports.items():
            self.metrics.probe_latency.labels(name).observe(report.latency_ms / 1000)

    def _publish(self, found: list[Verdict], touched: set[str] | None = None) -> list[Verdict]:
        """Show `found`, every task's verdict; gauges and logs look only at the `touched`
        tasks when given (a round after an apply), else at every task."""
        self.state.verdicts = found
        self.state.readiness_at = datetime.now(UTC)
        changed = found if touched is None else [v for v in found if v.task in touched]
        self._set_series(changed, set(self._published) if touched is None else touched)
        self._log_changes(changed)
        return found

    def _set_series(self, found: list[Verdict], looked_at: set[str]) -> None:
        """The per-task gauges of the tasks `looked_at`: a series changed or gone is removed,
        a new value set. `found` holds their verdicts (none for a task gone)."""
        published = self._published
        current = {v.task: (v.status.value, "true" if v.required else "false") for v in found}
        status, servable = self.metrics.task_status, self.metrics.task_servable
        for task in looked_at:
            was = published.get(task)
            if was is not None and current.get(task) != was:
                status.remove(task, was[0])
                servable.remove(task, was[1])
                del published[task]
        for task, (now, required) in current.items():
            if published.get(task) != (now, required):
                status.labels(task, now).set(1)
                servable.labels(task, required).set(1 if Status(now) in SERVABLE else 0)
                published[task] = (now, required)

    def _log_changes(self, found: list[Verdict]) -> None:
        """Log the tasks whose readiness changed since the last round, not every round.

        Tasks that changed the same way are one line: a provider that is down is one warning
        naming how many tasks it affects, however many route to it.
        """
        groups: dict[tuple[str, ...], list[Verdict]] = {}
        for verdict in found:
            key = (verdict.status, verdict.reason.value if verdict.reason else None)
            if self._logged.get(verdict.task) == key:
                continue
            self._logged[verdict.task] = key
            groups.setdefault(_group(verdict), []).append(verdict)
        for changed in groups.values():
            _log_group(changed)


def _group(verdict: Verdict) -> tuple[str, ...]:
    """What tasks share to be logged on one line."""
    if verdict.status is Status.ready:
        return (verdict.status.value, verdict.provider)
    if verdict.reason is Reason.route_disabled:
        return (verdict.status.value, verdict.reason.value)
    reason = verdict.reason.value if verdict.reason else ""
    return (verdict.status.value, reason, verdict.provider, verdict.detail, verdict.remedy)


def _log_group(changed: list[Verdict]) -> None:
    first = changed[0]
    fix = f"; fix: {first.remedy}" if first.remedy else ""
    if len(changed) == 1:
        if first.status is Status.ready:
            log.info("task %s is ready (%s)", first.task, first.served_by)
        elif first.reason is Reason.route_disabled:
            log.info("task %s: route disabled", first.task)
        else:
            log.warning("task %s is %s: %s%s", first.task, first.status.value, first.detail, fix)
        return
    tasks = _some_tasks(changed)
    if first.status is Status.ready:
        log.info("%d tasks on provider %s are ready (%s)", len(changed), first.provider, tasks)
    elif first.reason is Reason.route_disabled:
        log.info("%d tasks: route disabled (%s)", len(changed), tasks)
    else:
        log.warning(
            "%d tasks on provider %s are %s: %s%s (%s)",
            len(changed),
            first.provider,
            first.status.value,
            first.detail,
            fix,
            tasks,
        )


def _some_tasks(changed: list[Verdict], shown: int = 3) -> str:
    names = ", ".join(v.task for v in changed[:shown])
    return names if len(changed) <= shown else f"{names} and {len(changed) - shown} more"


async def _unless_stopped(work: Coroutine[Any, Any, Any], stop: asyncio.Event) -> None:
    """Run `work`, cancelled when `stop` comes first: a hung probe must not hold up SIGTERM."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
    if not task.cancelled():
        task.result()
