"""Test-only entry point: `python -m tests.scoring_worker DB_URL TASK [--lease-s S] [--batch N]
[--wait-go]` drains the scoring queue with a `ScoringWorker`, as `score --once` does, but with the
lease and batch a fault test needs and without probing first (TASK is taken as servable).

It prints one JSON line per event, flushed, so that a process killed midway has said what it did:
    {"owner": "..."}                 at start (after `ready` and a `go` line on stdin with
                                     --wait-go, so that several workers start together)
    {"claimed": [job ids]}           after every claim
    {"stats": {...}}                 at the end: done, retried, dead, lost_lease

The test side is below too: `Worker` runs one such process, and two helpers give each test module
a migrated database of its own and read the queue's rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, text

from reconciler.adapters.db import migrate
from reconciler.adapters.db import queue_store as queue
from reconciler.adapters.db.engine import make_engine
from reconciler.adapters.db.tables import scoring_jobs
from reconciler.adapters.plugins import load_registry
from reconciler.service.scoring import ScoringOptions, ScoringWorker

ROOT = Path(__file__).resolve().parent.parent


def _say(**event: Any) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("task")
    parser.add_argument("--lease-s", type=float, default=300.0)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--wait-go", action="store_true")
    args = parser.parse_args(argv)
    claim = queue.claim

    def claiming(*given: Any, **named: Any) -> list[queue.ClaimedJob]:
        jobs = claim(*given, **named)
        if jobs:
            _say(claimed=[job.id for job in jobs])
        return jobs

    queue.claim = claiming  # the worker calls `queue.claim` through the module
    engine = make_engine(args.database_url)
    options = ScoringOptions(lease_s=args.lease_s, batch=args.batch, idle_poll_s=0.1)
    worker = ScoringWorker(engine, load_registry(), env={}, options=options)
    if args.wait_go:
        _say(ready=True)
        sys.stdin.readline()
    _say(owner=worker.owner)
    stats = asyncio.run(worker.drain({args.task}))
    _say(stats={k: getattr(stats, k) for k in ("done", "retried", "dead", "lost_lease")})
    engine.dispose()
    return 0


# --- the test side ----------------------------------------------------------------------------


@dataclass
class Worker:
    """One `python -m tests.scoring_worker` process and what it has said so far."""

    proc: subprocess.Popen[str]
    claimed: list[int] = field(default_factory=list)
    stats: dict[str, int] | None = None
    owner: str | None = None

    @classmethod
    def start(cls, database_url: str, task: str, *extra: str) -> Worker:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.scoring_worker", database_url, task, *extra],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        return cls(proc)

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()

    def read_until(self, key: str) -> dict[str, Any]:
        """Read events until one with `key`; returns it."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event: dict[str, Any] = json.loads(line)
            self.claimed += event.get("claimed", [])
            self.stats = event.get("stats", self.stats)
            self.owner = event.get("owner", self.owner)
            if key in event:
                return event
        raise AssertionError(f"the worker exited ({self.proc.wait()}) before saying {key!r}")

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 60) -> dict[str, int]:
        """Read to the end; returns the stats of a worker that drained the queue."""
        self.read_until("stats")
        assert self.proc.wait(timeout=timeout) == 0
        assert self.stats is not None
        return self.stats

    def read_rest(self) -> None:
        """After a kill: take in whatever the process said before it died."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.claimed += json.loads(line).get("claimed", [])


@contextmanager
def migrated_database(kind: str, admin: Engine | None, directory: Path) -> Iterator[str]:
    """A database of its own at the newest schema revision: a SQLite file, or a PostgreSQL
    database created through `admin` (an AUTOCOMMIT engine) and dropped afterwards."""
    if kind == "sqlite":
        url = f"sqlite:///{directory / f'queue-{uuid.uuid4().hex[:8]}.db'}"
    else:
        assert admin is not None
        name = f"reconciler_t_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = admin.url.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    try:
        yield url
    finally:
        if admin is not None and kind != "sqlite":
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def job_rows(database_url: str) -> list[dict[str, Any]]:
    """Every job row, by task and item id."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            query = select(scoring_jobs).order_by(scoring_jobs.c.task, scoring_jobs.c.item_id)
            return [dict(row._mapping) for row in conn.execute(query)]
    finally:
        engine.dispose()


def empty_queue(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(scoring_jobs.delete())
    finally:
        engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
