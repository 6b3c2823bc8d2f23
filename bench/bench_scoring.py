"""The scoring worker against a fake Ollama in another process, on SQLite and PostgreSQL.

Per engine (a SQLite file in a temp dir, or a PostgreSQL database of its own, dropped
afterwards), migrated, one provider and the `scoring` route applied. Each timed run is one
`ScoringWorker.drain` (the code path of `score --once`, options at their defaults) over N freshly
enqueued jobs (enqueued untimed): claim under a lease, ask the model, validate, store.
- overhead: the fake answers at once, so the time is the worker's own (database round trips,
  routing, JSON Schema checks, HTTP): jobs/s at provider max_concurrency 1 and 16.
- latency: the fake answers after 50 ms, max_concurrency C = 1, 4, 16, 64. The ideal is C / 50 ms
  jobs/s (every slot always busy); x ideal is the measured rate over it.
Floor: the same N chat requests sent by raw httpx on one kept client with httpx's default
keep-alive (20 connections), C at a time, no database: what the fake server and loopback HTTP
allow. (A pool keeping all 64 connections alive is slower still: httpcore looks at each of them
for every request.)
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import Engine

from bench.databases import bench_database, postgres_unreachable
from bench.harness import Options, Report, measure, progress, rate, seconds
from reconciler.adapters.db import migrate
from reconciler.adapters.db import queue_store as queue
from reconciler.adapters.db.engine import make_engine
from reconciler.adapters.db.tables import scoring_jobs
from reconciler.adapters.plugins import load_registry
from reconciler.core.config import ConfigLoader
from reconciler.core.registry import ProviderRegistry
from reconciler.service import reconcile
from reconciler.service.scoring import ScoringWorker

NAME = "scoring"
ROOT = Path(__file__).resolve().parent.parent
ENGINES = ("sqlite", "postgresql")
LATENCY_S = 0.05
QUICK_BUDGET_S = 1.0
HEADERS = (
    "case",
    "jobs",
    "conc",
    "model ms",
    "s",
    "jobs/s",
    "ms/job",
    "ideal jobs/s",
    "x ideal",
    "floor jobs/s",
    "x floor",
    "runs",
)
NOTES = [
    "Each run: ScoringWorker.drain over N jobs enqueued beforehand (untimed), default options "
    "(batch 64). conc: the provider's max_concurrency. ms/job: run time / N.",
    "ideal: conc / model latency (every slot busy all the time; '-' when the model answers at "
    "once). x ideal: jobs/s / ideal (1.00 is perfect). floor: the same N chat requests by raw "
    "httpx, conc at a time, no database; x floor: run time / floor time.",
]


@dataclass(frozen=True)
class Case:
    engine: str
    latency_s: float
    concurrency: int
    jobs: int

    @property
    def name(self) -> str:
        what = "overhead" if not self.latency_s else f"latency{self.latency_s * 1000:.0f}ms"
        return f"{NAME}/{self.engine}/{what}/c{self.concurrency}"


def cases(engine: str, quick: bool) -> list[Case]:
    seconds_each = 0.5 if quick else 3.0  # at the ideal rate
    overhead = [Case(engine, 0.0, 1, 100 if quick else 1_000)]
    overhead.append(Case(engine, 0.0, 16, 200 if quick else 3_000))
    concurrencies = (1, 4, 16, 64)
    latency = [Case(engine, LATENCY_S, c, int(c * seconds_each / LATENCY_S)) for c in concurrencies]
    return overhead + latency


def run(options: Options) -> Report:
    if options.quick:
        options = Options(options.quick, options.filters, options.repeats, QUICK_BUDGET_S)
    report = Report(
        title="Scoring worker throughput against a fake Ollama on loopback (medians)",
        headers=HEADERS,
    )
    for engine_name in ENGINES:
        wanted = [c for c in cases(engine_name, options.quick) if options.selected(c.name)]
        if not wanted:
            continue
        unreachable = postgres_unreachable() if engine_name == "postgresql" else None
        if unreachable:
            progress(f"{NAME}/postgresql: skipped, {unreachable}")
            report.notes.append(f"postgresql: skipped, {unreachable}")
            continue
        report.rows += _engine_rows(engine_name, wanted, options)
    if report.rows:
        report.notes += NOTES
    return report


def _engine_rows(engine_name: str, wanted: list[Case], options: Options) -> list[list[str]]:
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp,
        bench_database(engine_name, Path(tmp), "scoring.db") as url,
    ):
        engine = make_engine(url)
        try:
            migrate.upgrade(engine)
            for latency in sorted({c.latency_s for c in wanted}):
                with fake_ollama(latency) as base_url:
                    bed = Bed(engine, Path(tmp), base_url, load_registry())
                    for case in (c for c in wanted if c.latency_s == latency):
                        progress(f"{case.name} ...")
                        rows.append(bed.row(case, options))
        finally:
            engine.dispose()
    return rows


@contextmanager
def fake_ollama(latency_s: float) -> Iterator[str]:
    """The base URL of a fake Ollama in another process, answering chats after `latency_s`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakeprovider", "ollama", "1", "0", str(latency_s)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        urls: list[str] = json.loads(proc.stdout.readline())
        yield urls[0]
    finally:
        proc.communicate(input="", timeout=30)


@dataclass
class Bed:
    engine: Engine
    tmp: Path
    base_url: str
    registry: ProviderRegistry

    def row(self, case: Case, options: Options) -> list[str]:
        self._apply(case.concurrency)
        done: list[int] = []
        timing = measure(
            lambda: done.append(self._drain()), options, setup=lambda: self._enqueue(case.jobs)
        )
        if set(done) != {case.jobs}:  # a sanity check, not a timing assertion
            raise AssertionError(f"{case.name}: scored {done} of {case.jobs} jobs")
        floor = measure(lambda: asyncio.run(self._floor(case)), options)
        ideal = case.concurrency / case.latency_s if case.latency_s else None
        per_s = case.jobs / timing.median
        return [
            case.name,
            str(case.jobs),
            str(case.concurrency),
            f"{case.latency_s * 1000:.0f}",
            seconds(timing.median),
            rate(case.jobs, timing.median),
            f"{timing.ms / case.jobs:.2f}",
            f"{ideal:.0f}" if ideal else "-",
            f"{per_s / ideal:.2f}" if ideal else "-",
            rate(case.jobs, floor.median),
            f"{timing.median / floor.median:.2f}",
            f"{timing.runs}/{floor.runs}",
        ]

    def _apply(self, concurrency: int) -> None:
        config = self.tmp / "config"
        config.mkdir(exist_ok=True)
        (config / "scoring.yaml").write_text(
            f"""\
version: 1
providers:
  local:
    type: ollama
    endpoint: {{base_url: "{self.base_url}", timeout_s: 30}}
    max_concurrency: {concurrency}
routes:
  scoring:
    provider: local
    model: llama3.1:8b
""",
            encoding="utf-8",
        )
        state = reconcile.load_config([config], ConfigLoader(self.registry))
        reconcile.apply(self.engine, state)

    def _enqueue(self, count: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(scoring_jobs.delete())
        items = [(f"item-{i:06d}", {"text": f"item number {i}"}) for i in range(count)]
        queue.enqueue(self.engine, "scoring", items, datetime.now(UTC))

    def _drain(self) -> int:
        worker = ScoringWorker(self.engine, self.registry, env={})
        return asyncio.run(worker.drain({"scoring"})).done

    async def _floor(self, case: Case) -> int:
        slots = asyncio.Semaphore(case.concurrency)
        limits = httpx.Limits(max_connections=case.concurrency, max_keepalive_connections=20)
        async with httpx.AsyncClient(
            base_url=self.base_url, trust_env=False, limits=limits, timeout=30
        ) as client:

            async def one(i: int) -> int:
                body = {
                    "model": "llama3.1:8b",
                    "messages": [{"role": "user", "content": f"item number {i}"}],
                    "stream": False,
                }
                async with slots:
                    return (await client.post("/api/chat", json=body)).status_code

            codes = await asyncio.gather(*(one(i) for i in range(case.jobs)))
        if set(codes) != {200}:
            raise AssertionError(f"{case.name}: the floor got {sorted(set(codes))}")
        return len(codes)
