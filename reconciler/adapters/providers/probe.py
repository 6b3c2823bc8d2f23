"""Probe every provider at once, each under its own deadline, one probe per provider per cycle.

A dead, trickling or black-holed provider costs its own deadline and nothing more: probes run
concurrently (a bounded number doing work at once, so a thousand providers neither exhaust file
descriptors nor starve each other of this loop's time), and a probe's deadline clock starts only
when it gets its turn. What a probe reads is its provider type's driver's business.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from reconciler.adapters.providers.builtin import builtin_driver
from reconciler.adapters.providers.driver import ProbeContext, ProviderDriver
from reconciler.adapters.providers.http import (
    ProbeFailure,
    make_client,
    resolve_headers,
)
from reconciler.adapters.providers.observation import Observation
from reconciler.core.readiness import ProbeReport, Reason
from reconciler.core.spec import ProviderSpec

log = logging.getLogger(__name__)
# Probes doing work at once: few enough that a probe's deadline is not eaten by the others' CPU
# work in this event loop. A probe still waiting after SLOT_HOLD_S (SUSPECT_HOLD_S when its
# last probe timed out) hands its slot on, so hung providers wait out their deadlines side by
# side without holding up the healthy ones.
DEFAULT_CONCURRENCY = 32
# A probe's connections are kept from one round to the next (the daemon's rounds are 30 s apart
# by default): otherwise every round opens a new connection to every provider. A connection the
# server closed meanwhile is seen as such and not reused.
KEEPALIVE_S = 300.0
SLOT_HOLD_S = 0.1
# A provider whose last probe timed out is likely waiting on its server again: its slot is
# checked sooner, so that the hung ones of a round start their deadlines together. When every
# provider timed out (an outage), the lateness check still bounds how many run at once.
SUSPECT_HOLD_S = 0.01
LOOP_LAG_S = 0.02


class _Slot:
    """A semaphore slot, handed on once its probe is waiting on the server rather than on us.

    Every `hold_s` the slot checks how late its timer fired: late means this event loop is
    busy (the probes in flight are competing for it), so the slot is kept and more probes would
    only slow each other into false timeouts; on time means the loop is idle and this probe is
    waiting on its server, so the slot goes to the next probe.
    """

    def __init__(self, semaphore: asyncio.Semaphore, hold_s: float = SLOT_HOLD_S) -> None:
        self._semaphore: asyncio.Semaphore | None = semaphore
        self._hold_s = hold_s
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        due = self._loop.time() + self._hold_s
        self._timer = self._loop.call_at(due, self._check, due)

    def _check(self, due: float) -> None:
        if self._loop.time() - due > LOOP_LAG_S:
            self._arm()
        else:
            self.release()

    def release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._semaphore is not None:
            self._semaphore.release()
            self._semaphore = None


@dataclass(frozen=True, slots=True)
class Target:
    """A provider to probe, the models the routes ask of it, and its type's driver.

    Without a driver, a built-in type's is used.
    """

    name: str
    spec: ProviderSpec
    models: frozenset[str]
    driver: ProviderDriver | None = field(default=None, compare=False)


class Prober:
    """Keeps one pooled client per provider across cycles; `aclose()` when done."""

    def __init__(
        self, env: Mapping[str, str] | None = None, concurrency: int = DEFAULT_CONCURRENCY
    ) -> None:
        self._env = env
        self._semaphore = asyncio.Semaphore(concurrency)
        self._clients: dict[str, tuple[ProviderSpec, httpx.AsyncClient]] = {}
        self._memory: dict[str, dict[str, object]] = {}
        self._timed_out: set[str] = set()

    async def probe_all(self, targets: Iterable[Target]) -> dict[str, ProbeReport]:
        """Probe every target concurrently; a report for each, never an exception.

        Those whose last probe timed out take the first slots: a provider that hangs
        again then waits out its deadline while the others are probed, not after them. What
        the prober knows of providers not given is kept (see `retain`).
        """
        targets = sorted(targets, key=lambda t: t.name not in self._timed_out)
        reports = await asyncio.gather(*(self._probe_one(t) for t in targets))
        for report in reports:
            if report.reason is Reason.timeout:
                self._timed_out.add(report.provider)
            else:
                self._timed_out.discard(report.provider)
        return {report.provider: report for report in reports}

    async def aclose(self) -> None:
        await self.retain(set())

    async def retain(self, keep: Iterable[str]) -> None:
        """Forget every provider but `keep`: their connections, memory and last timeouts."""
        keep = set(keep)
        for name in [n for n in self._clients if n not in keep]:
            _, client = self._clients.pop(name)
            self._memory.pop(name, None)
            self._timed_out.discard(name)
            await client.aclose()

    async def _client(self, target: Target) -> httpx.AsyncClient:
        held = self._clients.get(target.name)
        if held is not None and held[0] == target.spec:
            return held[1]
        if held is not None:  # a new endpoint: nothing learned of the old one holds
            await held[1].aclose()
            self._memory.pop(target.name, None)
            self._timed_out.discard(target.name)
        client = make_client(target.spec.endpoint, max_connections=4, keepalive_s=KEEPALIVE_S)
        self._clients[target.name] = (target.spec, client)
        return client

    async def _probe_one(self, target: Target) -> ProbeReport:
        await self._semaphore.acquire()
        suspect = target.name in self._timed_out
        slot = _Slot(self._semaphore, SUSPECT_HOLD_S if suspect else SLOT_HOLD_S)
        try:
            return await self._timed(target)
        finally:
            slot.release()

    async def _timed(self, target: Target) -> ProbeReport:
        checked_at = datetime.now(UTC)
        started = time.perf_counter()
        deadline = target.spec.endpoint.probe_timeout_s
        try:
            async with asyncio.timeout(deadline):
                seen = await self._observe(target)
        except ProbeFailure as failure:
            self._memory.pop(target.name, None)  # after a failure, learn everything again
            return _failed(target, checked_at, started, failure.reason, failure.detail)
        except TimeoutError:
            self._memory.pop(target.name, None)
            detail = f"no complete answer within the {deadline:g} s probe deadline"
            return _failed(target, checked_at, started, Reason.timeout, detail)
        except Exception as exc:  # unforeseen: still a report, never an exception
            self._memory.pop(target.name, None)
            log.warning("probe of %s failed unexpectedly: %s", target.name, type(exc).__name__)
            detail = f"the probe failed unexpectedly ({type(exc).__name__})"
            return _failed(target, checked_at, started, Reason.bad_response, detail)
        latency = (time.perf_counter() - started) * 1000
        return ProbeReport(
            provider=target.name,
            checked_at=checked_at,
            latency_ms=latency,
            version=seen.version,
            models=seen.models,
            capabilities=seen.capabilities,
            loaded=seen.loaded,
        )

    async def _observe(self, target: Target) -> Observation:
        spec = target.spec
        driver = target.driver or builtin_driver(spec.type)
        if driver is None:
            raise ProbeFailure(
                Reason.bad_response,
                f"provider type {spec.type!r} has no driver in this installation",
            )
        env = os.environ if self._env is None else self._env
        headers = resolve_headers(spec.endpoint, env, driver.auth_headers)
        client = await self._client(target)
        memory = self._memory.setdefault(target.name, {})
        return await driver.probe(ProbeContext(client, spec, headers, target.models, memory))


def _failed(
    target: Target, checked_at: datetime, started: float, reason: Reason, detail: str
) -> ProbeReport:
    latency = (time.perf_counter() - started) * 1000
    log.debug("probe of %s failed: %s (%s)", target.name, reason.value, detail)
    return ProbeReport(
        provider=target.name,
        checked_at=checked_at,
        latency_ms=latency,
        reason=reason,
        detail=detail,
    )


async def probe_once(
    targets: Iterable[Target],
    env: Mapping[str, str] | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> dict[str, ProbeReport]:
    """One probe round with fresh clients, closed afterwards: for the CLI."""
    prober = Prober(env, concurrency)
    try:
        return await prober.probe_all(targets)
    finally:
        await prober.aclose()
