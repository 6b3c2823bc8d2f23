"""Recording what a running daemon's database went through while its files are edited.

`Recorder` starts a daemon, waits for its first apply, then samples the routes table every ~10 ms
in a thread (`Sampler`); `Recorded.check` then asserts that every state seen was a complete version
of the files, in order, and that the daemon ended well. `version` is the state a routes file makes.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError

from reconciler.adapters.db.engine import make_engine
from reconciler.adapters.db.tables import revisions, routes
from tests.builders import TWENTY_TASKS, task_routes
from tests.daemon_harness import Daemon, Daemons

State = frozenset[tuple[str, str]]


def version(model: str, tasks: tuple[str, ...] = TWENTY_TASKS) -> State:
    """The routes table as it is once `task_routes(model, tasks)` is applied."""
    return frozenset((task, model) for task in tasks)


class Sampler:
    """Reads the routes table every ~10 ms in a thread; keeps each distinct state and its time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.states: list[tuple[float, State]] = []  # (monotonic time first seen, state)
        self.reads = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="routes sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.states and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.states, f"the sampler never read the routes table: {self.errors}"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        query = select(routes.c.task, routes.c.model)
        while not self._stop.is_set():
            try:
                with self.engine.connect() as conn:
                    rows = conn.execute(query).all()
            except DBAPIError as exc:  # kept, and asserted empty by the tests
                self.errors.append(str(exc.orig).strip()[:200])
            else:
                state = frozenset((row.task, row.model) for row in rows)
                if not self.states or self.states[-1][1] != state:
                    self.states.append((time.monotonic(), state))
                self.reads += 1
            self._stop.wait(0.01)

    @property
    def current(self) -> State:
        return self.states[-1][1]

    def seen(self) -> list[State]:
        return [state for _, state in self.states]

    def first_seen(self, state: State) -> float:
        return next(at for at, seen in self.states if seen == state)


@dataclass
class Revision:
    generation: int
    ops: Counter[str]
    deleted: list[str]


@dataclass
class Recorded:
    """A running daemon, its config directory and what its database went through."""

    daemon: Daemon
    directory: Path
    sampler: Sampler
    engine: Engine
    start_generation: int

    def revisions(self) -> list[Revision]:
        """The revisions applied since the daemon's first apply, oldest first."""
        query = (
            select(revisions.c.generation, revisions.c.plan)
            .where(revisions.c.generation > self.start_generation)
            .order_by(revisions.c.generation)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        out = []
        for row in rows:
            actions = row.plan["actions"]
            out.append(
                Revision(
                    row.generation,
                    Counter(a["op"] for a in actions),
                    [a["key"] for a in actions if a["op"] == "delete"],
                )
            )
        return out

    def wait_state(self, state: State, timeout: float = 10, what: str = "the new routes") -> None:
        self.daemon.wait_for(lambda: self.sampler.current == state, timeout, what)

    def check(self, allowed: list[State], final: State) -> None:
        """Only complete versions were ever seen, in order; it ends in `final`; all is well."""
        self.sampler.close()
        seen = self.sampler.seen()
        assert not self.sampler.errors, self.sampler.errors
        assert self.sampler.reads > 20
        assert seen[-1] == final
        unknown = [sorted(s) for s in seen if s not in allowed]
        assert not unknown, f"the database held a state that no file version has: {unknown}"
        order = [allowed.index(s) for s in seen]
        assert order == sorted(order), f"states went back and forth: {order}"
        status = self.daemon.status()
        assert status["error"] is None
        assert self.daemon.get("/healthz").status_code == 200
        assert self.daemon.stop(signal.SIGTERM) == 0
        log = self.daemon.log()
        assert "Traceback" not in log
        assert "nothing was applied" not in log, log


class Recorder:
    """Starts daemons and records their routes tables: `record(db_url, *daemon_args)` starts one
    on a fake provider and `task_routes(model)`, `record(db_url, *args, directory=...)` on a
    config directory of the test's own; both wait for the first apply, then sample."""

    def __init__(self, daemons: Daemons) -> None:
        self.daemons = daemons
        self.opened: list[Recorded] = []

    def __call__(
        self, db_url: str, *extra: str, directory: Path | None = None, model: str = "m-a"
    ) -> Recorded:
        if directory is None:
            scene = self.daemons.on_fake(db_url, *extra, provider={}, routes=task_routes(model))
            daemon, directory, first = scene.daemon, scene.directory, scene.first
        else:
            daemon = self.daemons(db_url, directory, *extra)
            first = daemon.wait_generation(1)
        engine = make_engine(db_url)
        sampler = Sampler(engine)
        recorded = Recorded(daemon, directory, sampler, engine, first["generation"])
        self.opened.append(recorded)
        sampler.start()
        return recorded

    def close(self) -> None:
        for recorded in self.opened:
            recorded.sampler.close()
            recorded.engine.dispose()
