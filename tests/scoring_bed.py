"""A scoring test bed: fake providers, a migrated database with routes applied, ways to use them.

`Bed` and `set_up_bed` serve the scoring, queue, results and `try` tests (two providers, four
routes: `tests.builders.scoring_config`); `Scene` is one fake provider and a route chosen by the
test (Anthropic, plugin drivers); `put_jobs` writes queue rows straight into the database.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.adapters.db.engine import make_engine
from reconciler.adapters.db.store import current_generation
from reconciler.adapters.db.tables import scoring_jobs
from reconciler.adapters.plugins import load_registry
from reconciler.service.scoring import ScoreStats, ScoringOptions, ScoringWorker
from tests.builders import scoring_config
from tests.conftest import Result
from tests.fakeprovider import OPENAI, FakeModel, FakeServer, answering
from tests.scoring_worker import job_rows

FAST = ScoringOptions(max_attempts=2, backoff_base_s=0.01, idle_poll_s=0.05)
NOW = datetime.now(UTC)


@dataclass
class _Configured:
    """A database URL, a config directory, fake providers and the CLI to run against them."""

    url: str
    directory: Path
    fake: FakeServer
    cli: Callable[..., Result]

    def run(self, *args: str | Path) -> Result:
        return self.cli("--database-url", self.url, "--config", self.directory, *args)


@dataclass
class Bed(_Configured):
    """Fake providers, this module's database with the routes applied, and ways to use them."""

    def apply(self, triage_model: str = "llama3.1:8b") -> None:
        text = scoring_config(
            self.fake.base_url("local"), self.fake.base_url("cloud"), triage_model
        )
        (self.directory / "config.yaml").write_text(text, encoding="utf-8")
        applied = self.run("apply")
        assert applied.code == 0, applied.output

    def enqueue(self, task: str, given: list[dict[str, Any]]) -> None:
        source = self.directory.parent / f"{task}-{time.monotonic_ns()}.jsonl"
        source.write_text("".join(json.dumps(i) + "\n" for i in given), encoding="utf-8")
        result = self.run("enqueue", task, source)
        assert result.code == 0, result.output

    def drain(self, task: str, options: ScoringOptions = FAST) -> ScoreStats:
        """Work the queue in this process, the task taken as servable (nothing probed)."""
        engine = make_engine(self.url)
        try:
            worker = ScoringWorker(engine, load_registry(), env={}, options=options)
            return asyncio.run(worker.drain({task}))
        finally:
            engine.dispose()

    def run_until(
        self, task: str, options: ScoringOptions, done: Callable[[ScoreStats], bool], within: float
    ) -> ScoreStats:
        """Run the worker as the daemon does (`run`) until `done(stats)`, for `within` s at most."""
        engine = make_engine(self.url)

        async def work() -> ScoreStats:
            worker = ScoringWorker(engine, load_registry(), env={}, options=options)
            stop = asyncio.Event()
            running = asyncio.create_task(worker.run(stop, lambda: {task}))
            deadline = time.monotonic() + within
            while not done(worker.stats) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            stop.set()
            await running
            return worker.stats

        try:
            return asyncio.run(work())
        finally:
            engine.dispose()

    def rows(self, task: str | None = None) -> dict[str, dict[str, Any]]:
        return {r["item_id"]: r for r in job_rows(self.url) if task in (None, r["task"])}

    def generation(self) -> int:
        engine = make_engine(self.url)
        try:
            with engine.connect() as conn:
                return current_generation(conn)
        finally:
            engine.dispose()

    def chats(self, provider: str) -> list[Any]:
        """The bodies of the chat requests a fake provider received, in order."""
        return [
            r.body
            for r in self.fake.requests
            if r.provider == provider and r.path in ("/api/chat", "/v1/chat/completions")
        ]


def set_up_bed(url: str, fake: FakeServer, tmp_path: Path, cli: Callable[..., Result]) -> Bed:
    """The fake providers `local` (Ollama) and `cloud` (OpenAI), and the routes applied to `url`."""
    models = [FakeModel("llama3.1:8b", loaded=True), FakeModel("qwen2.5:7b")]
    fake.add("local", models=models, chat=answering())
    fake.add("cloud", kind=OPENAI, models=[FakeModel("gpt-4o-mini")], chat=answering(0.6))
    (tmp_path / "config").mkdir()
    setup = Bed(url, tmp_path / "config", fake, cli)
    setup.apply()
    return setup


@dataclass
class Scene(_Configured):
    """One fake provider, a migrated SQLite database with a route to it, and ways to use them."""

    def apply(self, text: str) -> None:
        (self.directory / "config.yaml").write_text(text, encoding="utf-8")
        applied = self.run("apply")
        assert applied.code == 0, applied.output

    def enqueue(self, task: str, count: int) -> None:
        given = [{"id": f"item-{i}", "text": f"item number {i}"} for i in range(count)]
        source = self.directory.parent / f"{task}.jsonl"
        source.write_text("".join(json.dumps(i) + "\n" for i in given), encoding="utf-8")
        result = self.run("enqueue", task, source)
        assert result.code == 0, result.output

    def drain(self, task: str, env: dict[str, str]) -> ScoreStats:
        engine = make_engine(self.url)
        try:
            worker = ScoringWorker(engine, load_registry(), env=env, options=FAST)
            return asyncio.run(worker.drain({task}))
        finally:
            engine.dispose()

    def rows(self) -> dict[str, dict[str, Any]]:
        return {r["item_id"]: r for r in job_rows(self.url)}


def put_jobs(url: str, *jobs: dict[str, Any]) -> None:
    """Write jobs straight into the queue: done ones by default, with a typical answer."""
    defaults: dict[str, Any] = {
        "task": "scoring",
        "payload": {"text": "x"},
        "status": "done",
        "attempts": 1,
        "not_before": NOW,
        "lease_owner": None,
        "lease_expires_at": None,
        "provider": "local",
        "model": "llama3.1:8b",
        "result": {"score": 0.5, "rationale": "fine"},
        "latency_ms": 12.5,
        "prompt_tokens": 42,
        "completion_tokens": 9,
        "error": None,
        "created_at": NOW,
        "updated_at": NOW,
        "finished_at": NOW,
    }
    rows = [{**defaults, **job} for job in jobs]
    for row in rows:
        if row["status"] in ("queued", "leased"):
            row.update(finished_at=None, result=None, provider=None, model=None)
        if row["status"] == "dead":
            row.update(result=None, provider=None, model=None, latency_ms=None)
            row.update(prompt_tokens=None, completion_tokens=None)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(scoring_jobs.insert(), rows)
    finally:
        engine.dispose()
