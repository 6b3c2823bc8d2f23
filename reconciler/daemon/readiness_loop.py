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
            self._log_change(verdict)

    def _log_change(self, verdict: Verdict) -> None:
        """Log a task's readiness when it changes, not every round."""
        key = (verdict.status, verdict.reason.value if verdict.reason else None)
        if self._logged.get(verdict.task) == key:
            return
        self._logged[verdict.task] = key
        if verdict.status is Status.ready:
            log.info("task %s is ready (%s)", verdict.task, verdict.served_by)
        elif verdict.reason is Reason.route_disabled:
            log.info("task %s: route disabled", verdict.task)
        else:
            log.warning(
                "task %s is %s: %s%s",
                verdict.task,
                verdict.status.value,
                verdict.detail,
                f"; fix: {verdict.remedy}" if verdict.remedy else "",
            )


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
