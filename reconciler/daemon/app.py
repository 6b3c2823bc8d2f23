"""`reconciler run`: one asyncio process with a few root tasks.

    watcher ─┐
    resync  ─┼─> reconcile worker ──> database
    leader  ─┘         │
    readiness loop <───┘ ──> scoring worker ──> providers
    heartbeat, queue metrics, HTTP server (uvicorn, same loop)

When a root task fails, the others are stopped and the failure is reported (exit 1). SIGTERM or
SIGINT stop them all cleanly: an apply in flight commits or rolls back, the leader lock and the
provider connections are released, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from collections.abc import Coroutine
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from reconciler.core.config import ConfigLoader
from reconciler.core.readiness import SERVABLE
from reconciler.core.registry import ProviderRegistry
from reconciler.daemon.metrics import Metrics
from reconciler.daemon.readiness_loop import ReadinessLoop
from reconciler.daemon.state import DaemonState
from reconciler.daemon.web import (
    bind_sockets,
    create_app,
    exposure_warning,
    host_policy,
    make_server,
    shown_address,
)
from reconciler.daemon.worker import ReconcileWorker, WorkerOptions
from reconciler.errors import ReconcilerError, StateError
from reconciler.service import follow, heap, migrations, queue, reconcile
from reconciler.service.scoring import ScoringWorker

log = logging.getLogger(__name__)

STOP_GRACE_S = 8.0
LEADER_CHECK_S = 1.0
HOLDER_CHECK_S = 30.0
QUEUE_METRICS_S = 5.0
QUEUE_WINDOW_S = 300.0  # "recently" on the status page: the last five minutes
SHOWN_DEAD = 5  # the latest dead jobs on the status page
SCORING_RETRY_S = 5.0


@dataclass(frozen=True)
class DaemonOptions:
    config_dir: Path
    database_label: str
    http: tuple[str, int] | None = ("127.0.0.1", 8787)
    allow_hosts: tuple[str, ...] = ()  # Host names answered besides the defaults; `*`: any
    once: bool = False
    migrate: bool = False
    resync_s: float = 60.0
    drift: str = "correct"
    probe_interval_s: float = 30.0
    force_polling: bool | None = None
    scoring: bool = True


class Daemon:
    def __init__(self, engine: Engine, registry: ProviderRegistry, options: DaemonOptions) -> None:
        self.engine = engine
        self.options = options
        self.state = DaemonState(str(options.config_dir), options.database_label)
        self.metrics = Metrics()
        self.stop = asyncio.Event()
        self._holder_due = 0.0
        self.leadership = reconcile.leadership(engine)
        self.worker = ReconcileWorker(
            engine,
            options.config_dir,
            ConfigLoader(registry),
            self.state,
            self.metrics,
            WorkerOptions(resync_s=options.resync_s, drift=options.drift),
            lambda: self.state.leader,
        )
        self.readiness = ReadinessLoop(
            engine,
            registry,
            self.state,
            self.metrics,
            options.probe_interval_s,
            lambda: self.state.leader,
        )
        self.worker.on_applied = self.readiness.poke
        self.scorer = ScoringWorker(
            engine,
            registry,
            on_finished=self.metrics.job_finished,
            on_answered=self.metrics.answered,
        )
        self.server = None
        self.sockets: list[socket.socket] = []
        bind_host = options.http[0] if options.http is not None else "127.0.0.1"
        self.hosts = host_policy(bind_host, options.allow_hosts)
        if options.http is not None:
            app = create_app(engine, self.state, self.metrics, self.hosts)
            self.server = make_server(app, *options.http)

    async def run(self) -> int:
        """Claim the HTTP port, check the schema, reconcile once, then run until stopped.

        Returns the exit code. A port that cannot be had is one logged line and exit 1, before
        anything has started.
        """
        if self.options.http is not None and not self.options.once:
            try:
                self._listen(*self.options.http)
            except StateError as exc:
                log.error("%s", exc)
                return 1
        try:
            return await self._run()
        finally:
            for sock in self.sockets:
                sock.close()

    def _listen(self, host: str, port: int) -> None:
        self.sockets = bind_sockets(host, port)
        warning = exposure_warning(host, port, self.hosts)
        if warning is not None:
            log.warning("%s", warning)

    async def _run(self) -> int:
        if self.options.migrate:
            await asyncio.to_thread(migrations.upgrade, self.engine)
        await asyncio.to_thread(reconcile.require_schema, self.engine)
        await self._elect()
        sources = await asyncio.to_thread(follow.read, self.worker.config_dir)
        await self.worker.cycle(sources, resync=True)
        if self.options.once:
            await self.readiness.round_once()
            await asyncio.to_thread(self.leadership.release)
            return 0 if self.state.error is None else 1
        heap.settle()  # the config as applied is what this process holds from now on
        return await self._supervise()

    async def _supervise(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        roots: dict[str, Coroutine[Any, Any, None]] = {
            "watcher": follow.watch(
                self.options.config_dir,
                self.worker.poke,
                self.stop,
                force_polling=self.options.force_polling,
            ),
            "reconcile worker": self.worker.run(self.stop),
            "resync timer": self.worker.resync_timer(self.stop),
            "leader election": self._lead(),
            "readiness loop": self.readiness.run(self.stop),
            "heartbeat": self._heartbeat(),
        }
        if self.options.scoring:
            roots["scoring worker"] = self._score()
            roots["queue metrics"] = self._queue_metrics()
        if self.server is not None:
            roots["http server"] = self._serve_http()
        tasks = {asyncio.create_task(coro, name=name): name for name, coro in roots.items()}
        stopper: asyncio.Task[Any] = asyncio.create_task(self.stop.wait())
        done, _ = await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
        failed = [t for t in tasks if t in done and not self.stop.is_set()]
        code = 0
        for task in failed:
            exc = task.exception()
            log.error(
                "%s stopped unexpectedly: %s; shutting down",
                tasks[task],
                f"{type(exc).__name__}: {exc}" if exc else "it returned",
                exc_info=exc,
            )
            code = 1
        await self._shutdown(set(tasks))
        stopper.cancel()
        return code

    def _on_signal(self, signum: int) -> None:
        if self.stop.is_set():
            return
        log.info("%s received; stopping", signal.Signals(signum).name)
        self.state.stopping = True
        self.stop.set()

    async def _shutdown(self, tasks: set[asyncio.Task[None]]) -> None:
        self.stop.set()
        self.state.stopping = True
        if self.server is not None:
            self.server.should_exit = True
        _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
        for task in pending:
            log.warning("%s did not stop in %gs; cancelling it", task.get_name(), STOP_GRACE_S)
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.to_thread(self.leadership.release)
        self.state.leader = False
        log.info("stopped")

    async def _elect(self) -> None:
        held = await asyncio.to_thread(self.leadership.try_acquire)
        if held != self.state.leader:
            if held:
                log.info("this process reconciles %s (leader)", self.options.database_label)
            else:
                log.warning("lost leadership; serving status only")
        if not held and (self.state.leader or time.monotonic() >= self._holder_due):
            # Who leads changes rarely; asking PostgreSQL every second would be a query a second.
            self._holder_due = time.monotonic() + HOLDER_CHECK_S
            holder = await asyncio.to_thread(self.leadership.holder)
            if holder != self.state.leader_note:
                log.info("%s reconciles this database; this process serves status only", holder)
            self.state.leader_note = holder
        elif held:
            self.state.leader_note = "leader"
        gained = held and not self.state.leader
        self.state.leader = held
        self.metrics.leader.set(1 if held else 0)
        if gained:
            self.worker.poke(resync=True)
            self.readiness.poke()

    async def _lead(self) -> None:
        while not self.stop.is_set():
            await self._elect()
            with suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), LEADER_CHECK_S)

    def _servable(self) -> set[str]:
        return {v.task for v in self.state.verdicts if v.status in SERVABLE}

    async def _score(self) -> None:
        """The scoring worker; a database error (locked, gone) pauses it, never ends the daemon."""
        while not self.stop.is_set():
            try:
                await self.scorer.run(self.stop, self._servable)
            except (SQLAlchemyError, ReconcilerError) as exc:  # the schema changed, too
                reason = str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["?"]
                log.warning("scoring paused: %s; retrying in %gs", reason[0], SCORING_RETRY_S)
                with suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), SCORING_RETRY_S)

    async def _queue_metrics(self) -> None:
        while not self.stop.is_set():
            try:
                view = await asyncio.to_thread(
                    queue.overview, self.engine, QUEUE_WINDOW_S, SHOWN_DEAD
                )
            except (SQLAlchemyError, ReconcilerError):
                view = None
            if view is not None:
                self.state.queue = view
                self.metrics.queue_depth.clear()
                for task in view.tasks:
                    for status, n in task.statuses.items():
                        self.metrics.queue_depth.labels(task.task, status).set(n)
            with suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), QUEUE_METRICS_S)

    async def _heartbeat(self) -> None:
        while not self.stop.is_set():
            self.state.heartbeat = time.monotonic()
            with suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 1.0)

    async def _serve_http(self) -> None:
        assert self.server is not None
        host, port = self.options.http or ("", 0)
        announce = asyncio.create_task(self._announce(host, port))
        where = shown_address(host, port)
        try:
            await self.server.serve(sockets=self.sockets)
        except SystemExit:
            raise RuntimeError(f"the HTTP server on {where} could not start") from None
        finally:
            announce.cancel()
        if not self.stop.is_set():
            raise RuntimeError(f"the HTTP server on {where} stopped")

    async def _announce(self, host: str, port: int) -> None:
        assert self.server is not None
        while not self.server.started:
            await asyncio.sleep(0.05)
        log.info(
            "status page: http://%s/  (API: /api/v1/status, metrics: /metrics)",
            shown_address(host, port),
        )
