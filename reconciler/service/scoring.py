"""The scoring worker: claim jobs of servable tasks, ask the routed model, store the answer.

One code path for `reconciler score --once` and the daemon. Routes are resolved when a batch is
claimed, from the database's current generation, so a route change applies to the next batch
without a restart. At most `max_concurrency` calls run per provider.

Leases are short and kept alive: while a job is held (its call waiting for a slot or running),
its lease of `lease_s` (6 s) is renewed every `lease_s / 4`, on a thread of its own so that no
other database work can hold a renewal back. A worker that dies (SIGKILL, a lost host) stops
renewing, so its jobs are due again within `lease_s` of its last renewal and another worker, or
the restarted daemon, takes them within seconds; a live worker whose calls are slow keeps its
jobs however long the calls take. A job whose lease this worker no longer holds is never
written, so every item ends with exactly one result.

Asking the route is `reconciler.service.ask`, the code path `reconciler try` takes too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from reconciler.adapters import secrets
from reconciler.adapters.db import queue_store as queue
from reconciler.adapters.db.store import current_generation
from reconciler.core.registry import ProviderRegistry
from reconciler.core.scoring import backoff_s, percentile
from reconciler.core.text import scrub_tree, untrusted
from reconciler.service.ask import Answered, Asker, RouteFailure, RouteSnapshot, load_snapshot
from reconciler.service.group_commit import GroupCommit

__all__ = ["ScoreStats", "ScoringOptions", "ScoringWorker", "percentile"]

MAX_ERROR_CHARS = 2000
WAIT_NOTICE_S = 2.0  # a drain that waits longer than this for a retry says so
SNAPSHOT_MAX_AGE_S = 5.0  # a claim reads the routes again after this, even in one generation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoringOptions:
    lease_s: float = 6.0
    max_attempts: int = 5
    batch: int = 256  # jobs held at most; fewer when the providers' slots are fewer
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0
    idle_poll_s: float = 0.5
    stop_grace_s: float = 5.0


@dataclass
class ScoreStats:
    done: int = 0
    retried: int = 0
    dead: int = 0
    lost_lease: int = 0
    # The latest model latencies, for a summary; bounded, as a daemon scores for months.
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


class ScoringWorker:
    def __init__(
        self,
        engine: Engine,
        registry: ProviderRegistry,
        env: Mapping[str, str] | None = None,
        options: ScoringOptions | None = None,
        on_finished: Callable[[str, float | None], None] | None = None,
        on_wait: Callable[[float, int], None] | None = None,
        on_answered: Callable[[str, Answered], None] | None = None,
    ) -> None:
        """`on_finished(result, latency_s)` after every outcome kept; `on_answered(task,
        answered)` after every answer kept (its provider, model and tokens, for metrics)."""
        self.engine = engine
        self.registry = registry
        self.options = options or ScoringOptions()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stats = ScoreStats()
        self.asker = Asker(env)
        self._on_finished = on_finished or (lambda result, latency: None)
        self._on_wait = on_wait or _log_wait
        self._on_answered = on_answered or (lambda task, answered: None)
        self._noticed: datetime | None = None
        self._capacity = self.options.batch  # learned from the providers before each claim
        self._running: dict[int, asyncio.Task[None]] = {}
        # Tasks whose job was claimed again for a new attempt before they were done: their
        # outcome is written, they are only winding up; waited for at the end all the same.
        self._retiring: set[asyncio.Task[None]] = set()
        self._cached: tuple[RouteSnapshot | None, float] = (None, 0.0)
        self._outcomes = GroupCommit(partial(queue.finish_many, engine, self.owner))

    async def run(self, stop: asyncio.Event, servable: Callable[[], set[str]]) -> None:
        """Work the queue until `stop`; then release every lease still held."""
        keeper = asyncio.create_task(self._keep_leases())
        try:
            while not stop.is_set():
                claimed = await self._claim_batch(servable())
                if self._running and (not claimed or self._room() < self._refill_at()):
                    await asyncio.wait(
                        set(self._running.values()),
                        timeout=self.options.idle_poll_s,
                        return_when="FIRST_COMPLETED",
                    )
                elif not claimed:
                    await _sleep_or_stop(stop, self.options.idle_poll_s)
        finally:
            await self._wind_down(keeper)

    async def drain(self, servable: set[str]) -> ScoreStats:
        """Work until no job of a servable task is queued, leased or waiting to retry."""
        keeper = asyncio.create_task(self._keep_leases())
        try:
            while True:
                claimed = await self._claim_batch(servable)
                if self._running:
                    await asyncio.wait(set(self._running.values()), return_when="FIRST_COMPLETED")
                    continue
                if not claimed:
                    pending = await asyncio.to_thread(self._pending, servable)
                    if not pending:
                        return self.stats
                    await asyncio.sleep(min(pending, 5.0))
        finally:
            await self._wind_down(keeper)

    def _pending(self, servable: set[str]) -> float | None:
        """Seconds until the next job of a servable task is due; None when there is none."""
        with self.engine.connect() as conn:
            tasks = [t for t in queue.pending_tasks(conn) if t in servable]
            due = queue.next_due(conn, tasks) if tasks else None
        if not tasks:
            return None
        if due is None:  # only leased jobs: their holders finish them or their leases lapse
            return self.options.idle_poll_s
        earliest, count = due
        if earliest.tzinfo is None:
            earliest = earliest.replace(tzinfo=UTC)
        wait = (earliest - datetime.now(UTC)).total_seconds()
        if wait > WAIT_NOTICE_S and earliest != self._noticed:
            self._noticed = earliest  # said once per distinct wait, not at every poll
            self._on_wait(wait, count)
        return max(self.options.idle_poll_s, min(wait, self.options.idle_poll_s * 10))

    def _room(self) -> int:
        """How many more jobs this worker would hold: about what the providers can take (a few
        rounds of their slots), not a whole batch waiting here while other replicas sit idle."""
        return min(self.options.batch, self._capacity) - len(self._running)

    def _refill_at(self) -> int:
        """Claim again once a quarter of the jobs held are done, not after each one: one claim
        then serves many jobs instead of costing a transaction per job."""
        return max(1, min(self.options.batch, self._capacity) // 4)

    def _wants_more(self) -> bool:
        room = self._room()
        return room > 0 and not (self._running and room < self._refill_at())

    async def _claim_batch(self, tasks: set[str]) -> int:
        if not tasks or not self._wants_more():
            return 0
        # The routes before the claim: what the providers can take decides how many to claim,
        # and a failure here leaves no claimed job untracked.
        snapshot = await asyncio.to_thread(self._snapshot)
        slots = sum(spec.max_concurrency for spec in snapshot.specs.values() if spec.enabled)
        self._capacity = max(4 * slots, 16)
        room = self._room()
        if not self._wants_more():
            return 0
        lease = timedelta(seconds=self.options.lease_s)
        jobs = await asyncio.to_thread(
            queue.claim, self.engine, self.owner, tasks, room, lease, datetime.now(UTC)
        )
        for job in jobs:
            running = self._running.get(job.id)
            if running is not None and not running.done():
                if job.lapsed:
                    continue  # its lease lapsed and this worker took it again: the call runs on
                # Queued again, so its outcome is written: a retry that came due before the
                # task of the attempt before it was done.
                self._retiring.add(running)
                running.add_done_callback(self._retiring.discard)
            task = asyncio.create_task(self._work(job, snapshot))
            self._running[job.id] = task
            task.add_done_callback(self._forget(job.id))
        return len(jobs)

    def _snapshot(self) -> RouteSnapshot:
        """The routes and providers to score with: read again when an apply changed them (a new
        generation), and at least every `SNAPSHOT_MAX_AGE_S`, so a hand edit is seen too."""
        with self.engine.connect() as conn:
            generation = current_generation(conn)
        cached, read_at = self._cached
        fresh = time.monotonic() - read_at < SNAPSHOT_MAX_AGE_S
        if cached is not None and cached.generation == generation and fresh:
            return cached
        snapshot = load_snapshot(self.engine, self.registry)
        self._cached = (snapshot, time.monotonic())
        return snapshot

    async def _keep_leases(self) -> None:
        """Renew the leases of the jobs held, every quarter of `lease_s`, until cancelled."""
        lease = timedelta(seconds=self.options.lease_s)
        loop = asyncio.get_running_loop()
        # Its own thread: renewals must not queue behind claims and finishes in the default pool.
        with ThreadPoolExecutor(1, thread_name_prefix="lease-keeper") as keeper:
            while True:
                await asyncio.sleep(self.options.lease_s / 4)
                held = list(self._running)
                if not held:
                    continue
                until = datetime.now(UTC) + lease
                renew = partial(queue.renew, self.engine, self.owner, held, until)
                try:
                    await loop.run_in_executor(keeper, renew)
                except SQLAlchemyError as exc:  # the next round tries again; finish() checks
                    log.warning("could not renew %d lease(s): %s", len(held), type(exc).__name__)

    def _forget(self, job_id: int) -> Callable[[asyncio.Task[None]], None]:
        def forget(task: asyncio.Task[None]) -> None:
            if self._running.get(job_id) is task:  # not the next attempt's, claimed meanwhile
                del self._running[job_id]

        return forget

    async def _work(self, job: queue.ClaimedJob, snapshot: RouteSnapshot) -> None:
        """Score one job; whatever goes wrong ends in a retry or a dead job, never a lost one."""
        try:
            await self._attempt(job, snapshot)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or an unforeseen failure must not strand the lease
            log.exception("job %s/%s failed unexpectedly", job.task, job.item_id)
            error = f"internal error: {type(exc).__name__}: {exc}"
            if job.attempts >= self.options.max_attempts:
                await self._finish(job, _dead_values(error))
            else:
                await self._finish(job, self._retry_values(job, error, None))

    async def _attempt(self, job: queue.ClaimedJob, snapshot: RouteSnapshot) -> None:
        if job.attempts > self.options.max_attempts:  # leases expired again and again
            error = f"gave up after {job.attempts - 1} attempt(s) whose leases expired"
            await self._finish(job, _dead_values(error))
            return
        route = snapshot.routes.get(job.task)
        if route is None or not route["enabled"]:
            await self._finish(job, self._retry_values(job, "the task has no enabled route", None))
            return
        try:
            answered = await self.asker.ask(snapshot, job.task, route, job.payload)
        except RouteFailure as failure:
            error = str(failure)
            if failure.transient and job.attempts < self.options.max_attempts:
                await self._finish(job, self._retry_values(job, error, failure.retry_after_s))
            else:
                await self._finish(job, _dead_values(error))
            return
        if await self._finish(job, _done_values(answered, snapshot.generation)):
            self._on_answered(job.task, answered)

    def _retry_values(
        self, job: queue.ClaimedJob, error: str, retry_after: float | None
    ) -> dict[str, Any]:
        delay = backoff_s(
            job.attempts,
            base_s=self.options.backoff_base_s,
            cap_s=self.options.backoff_cap_s,
            retry_after_s=retry_after,
            uniform=random.uniform,
        )
        now = datetime.now(UTC)
        return {
            "status": queue.QUEUED,
            "error": error,
            "not_before": now + timedelta(seconds=delay),
            "updated_at": now,
        }

    async def _finish(self, job: queue.ClaimedJob, values: dict[str, Any]) -> bool:
        """Write the job's outcome if its lease is still held; True when it was kept."""
        values = _scrubbed(values)
        kept = await self._outcomes.write(job.id, values)
        status = values["status"]
        if not kept:
            self.stats.lost_lease += 1
            log.warning("job %s/%s: lease lost; its result was not kept", job.task, job.item_id)
            return False
        if status == queue.DONE:
            self.stats.done += 1
            self.stats.latencies_ms.append(values["latency_ms"])
            self._on_finished("done", values["latency_ms"] / 1000)
        elif status == queue.DEAD:
            self.stats.dead += 1
            log.warning("job %s/%s is dead: %s", job.task, job.item_id, values["error"])
            self._on_finished("dead", None)
        else:
            self.stats.retried += 1
            self._on_finished("retry", None)
        return True

    async def _wind_down(self, keeper: asyncio.Task[None]) -> None:
        """Let calls in flight finish briefly, then cancel them and give their jobs back; the
        lease keeper and the clients are closed whatever happens, so a restart leaks neither."""
        try:
            await self._give_back()
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            await self.asker.close()

    async def _give_back(self) -> None:
        await asyncio.gather(*self._retiring, return_exceptions=True)  # outcomes written already
        running = dict(self._running)
        if not running:
            return
        _, pending = await asyncio.wait(set(running.values()), timeout=self.options.stop_grace_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        unfinished = [job_id for job_id, task in running.items() if task in pending]
        try:
            released = await asyncio.to_thread(
                queue.release, self.engine, self.owner, unfinished, datetime.now(UTC)
            )
        except SQLAlchemyError as exc:  # their leases lapse within lease_s all the same
            log.warning("could not give %d job(s) back: %s", len(unfinished), type(exc).__name__)
            return
        if released:
            log.info("gave %d leased job(s) back to the queue", released)


def _log_wait(seconds: float, count: int) -> None:
    log.info("waiting %.0f s for %d queued job(s) to be due for a retry", seconds, count)


def _scrubbed(values: dict[str, Any]) -> dict[str, Any]:
    """What a job keeps, with every known secret value cut out of its error and its answer.

    A provider may echo the request's key back in an error body or in the answer itself; what is
    stored is served by `jobs`, `results` and the API.
    """
    known = secrets.known()
    if values.get("error"):
        values["error"] = untrusted(values["error"], known, limit=MAX_ERROR_CHARS)
    if values.get("result") is not None and known:
        values["result"] = scrub_tree(values["result"], known)
    return values


def _done_values(answered: Answered, generation: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "status": queue.DONE,
        "result": answered.result,
        "provider": answered.provider,
        "model": answered.model,
        "latency_ms": answered.latency_ms,
        "prompt_tokens": answered.prompt_tokens,
        "completion_tokens": answered.completion_tokens,
        "error": None,
        "generation": generation,
        "finished_at": now,
        "updated_at": now,
    }


def _dead_values(error: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"status": queue.DEAD, "error": error, "finished_at": now, "updated_at": now}


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return
