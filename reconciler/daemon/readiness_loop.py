"""The readiness loop: the leader probes and stores; followers read what the leader stored."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from reconciler import readiness
from reconciler.adapters.providers.probe import Prober
from reconciler.core.readiness import SERVABLE, Reason, Status, Verdict
from reconciler.core.registry import ProviderRegistry
from reconciler.daemon.metrics import Metrics
from reconciler.daemon.state import DaemonState
from reconciler.errors import ReconcilerError

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

    def poke(self) -> None:
        """Check again soon (the routes changed, or leadership did)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        prober = Prober()
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    await _unless_stopped(self.round(prober), stop)
                except (ReconcilerError, SQLAlchemyError) as exc:
                    log.warning("readiness check skipped: %s", str(exc).splitlines()[0])
                except Exception:  # a bug in one round must not end readiness for good
                    log.exception("readiness check failed; trying again next round")
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
        prober = Prober()
        try:
            return await self.round(prober)
        finally:
            await prober.aclose()

    async def round(self, prober: Prober) -> list[Verdict]:
        if self.is_leader():
            inputs = await asyncio.to_thread(
                readiness.inputs_from_database, self.engine, self.registry
            )
            reports = await readiness.probe(inputs, prober)
            for name, report in reports.items():
                self.metrics.probe_latency.labels(name).observe(report.latency_ms / 1000)
            found = readiness.decide(inputs, reports, datetime.now(UTC))
            await asyncio.to_thread(readiness.save, self.engine, found)
        else:
            found = await asyncio.to_thread(
                readiness.current, self.engine, self.registry, None, self.interval_s
            )
        self._publish(found)
        return found

    def _publish(self, found: list[Verdict]) -> None:
        self.state.verdicts = found
        self.state.readiness_at = datetime.now(UTC)
        self.metrics.task_status.clear()
        self.metrics.task_servable.clear()
        for verdict in found:
            self.metrics.task_status.labels(verdict.task, verdict.status.value).set(1)
            servable = verdict.status in SERVABLE
            required = "true" if verdict.required else "false"
            self.metrics.task_servable.labels(verdict.task, required).set(1 if servable else 0)
        self._log_changes(found)

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
