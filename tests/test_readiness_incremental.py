"""After an apply, readiness probes and rewrites only the tasks the applied rows touch.

A route changed is its task alone; a provider changed is every task that asks it, fallbacks
included. Every other verdict keeps its row and stays fresh (not stale for an older generation).
The periodic round still checks every task. On SQLite and PostgreSQL, against fake providers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine

from reconciler.adapters.db import readiness_store
from reconciler.adapters.plugins import load_registry
from reconciler.adapters.providers.probe import Prober
from reconciler.core.config import ConfigLoader
from reconciler.core.readiness import Reason, Status, Verdict
from reconciler.daemon.metrics import Metrics
from reconciler.daemon.readiness_loop import ReadinessLoop
from reconciler.daemon.state import DaemonState
from reconciler.service import readiness, reconcile
from tests.fakeprovider import FakeModel, FakeServer

TASKS = 20  # per provider


def config(fake: FakeServer, missing: str = "", timeout_b: int = 10) -> str:
    lines = [
        "version: 1",
        "providers:",
        "  a:",
        "    type: ollama",
        f'    endpoint: {{base_url: "{fake.base_url("a")}", probe_timeout_s: 2}}',
        "  b:",
        "    type: ollama",
        f'    endpoint: {{base_url: "{fake.base_url("b")}", timeout_s: {timeout_b}}}',
        "routes:",
    ]
    for provider in ("a", "b"):
        for i in range(TASKS):
            task = f"{provider}-{i:02d}"
            model = "no-such-model" if task == missing else "llama3.1:8b"
            lines += [f"  {task}:", f"    provider: {provider}", f"    model: {model}"]
    lines += ["  both:", "    provider: a", "    model: llama3.1:8b"]
    lines += ["    fallbacks:", "      - {provider: b, model: llama3.1:8b}"]
    return "\n".join(lines) + "\n"


class Scene:
    def __init__(self, engine: Engine, fake: FakeServer, directory: Path) -> None:
        self.engine, self.fake, self.directory = engine, fake, directory
        for name in ("a", "b"):
            fake.add(name, models=[FakeModel("llama3.1:8b", loaded=True)])
        self.loop = ReadinessLoop(
            engine, load_registry(), DaemonState("config", "db"), Metrics(), 30.0, lambda: True
        )

    def apply(self, text: str) -> set[tuple[str, str]]:
        """Apply `text`; returns the rows the apply wrote, as the daemon tells readiness."""
        self.directory.mkdir(exist_ok=True)
        (self.directory / "config.yaml").write_text(text, encoding="utf-8")
        state = reconcile.load_config([self.directory], ConfigLoader(load_registry()))
        result = reconcile.apply(self.engine, state)
        return {(a.kind.value, a.key) for a in result.plan.actions}

    def round(self, changed: set[tuple[str, str]] | None) -> list[Verdict]:
        async def once() -> list[Verdict]:
            prober = Prober()
            try:
                return await self.loop.round(prober, changed)
            finally:
                await prober.aclose()

        return asyncio.run(once())

    def probed(self) -> set[str]:
        """The providers asked anything since the last call."""
        asked = {request.provider for request in self.fake.requests}
        self.fake.requests.clear()
        return asked

    def checked_at(self) -> dict[str, datetime | None]:
        with self.engine.connect() as conn:
            return {v.task: v.checked_at for v in readiness_store.load_verdicts(conn)}


def test_a_changed_route_is_the_only_task_probed_and_rewritten(
    engine: Engine, fake: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[set[str] | None] = []
    reader = readiness_store.read_route_rows

    def read_route_rows(conn: Connection, tasks: Collection[str] | None = None) -> list[Any]:
        read.append(None if tasks is None else set(tasks))
        return reader(conn, tasks)

    monkeypatch.setattr(readiness_store, "read_route_rows", read_route_rows)
    scene = Scene(engine, fake, tmp_path / "config")
    scene.apply(config(fake))
    first = scene.round(None)
    assert len(first) == 2 * TASKS + 1 and {v.status for v in first} == {Status.ready}
    assert scene.probed() == {"a", "b"}
    before = scene.checked_at()

    changed = scene.apply(config(fake, missing="a-03"))
    assert changed == {("route", "a-03")}
    found = scene.round(changed)

    assert scene.probed() == {"a"}
    assert read == [None, {"a-03"}]  # the round after the apply read that one route only
    after = scene.checked_at()
    assert {task for task in after if after[task] != before[task]} == {"a-03"}
    by_task = {v.task: v for v in found}
    assert (by_task["a-03"].status, by_task["a-03"].reason) == (
        Status.not_ready,
        Reason.model_missing,
    )
    assert [v for v in found if v.task != "a-03"] == [v for v in first if v.task != "a-03"]
    # What the follower and `status` read: the kept verdicts are not stale for the new
    # generation, as their routes and providers did not change in it.
    current = {v.task: v for v in readiness.current(engine, load_registry())}
    assert {t for t, v in current.items() if v.status is Status.stale} == set()
    assert current["a-03"].reason is Reason.model_missing


def test_a_changed_provider_rewrites_every_task_that_asks_it_fallbacks_included(
    engine: Engine, fake: FakeServer, tmp_path: Path
) -> None:
    scene = Scene(engine, fake, tmp_path / "config")
    scene.apply(config(fake))
    scene.round(None)
    scene.probed()
    before = scene.checked_at()

    changed = scene.apply(config(fake, timeout_b=20))
    assert changed == {("provider", "b")}
    scene.round(changed)

    assert scene.probed() == {"a", "b"}  # `both` asks a first, then b
    after = scene.checked_at()
    rewritten = {task for task in after if after[task] != before[task]}
    assert rewritten == {f"b-{i:02d}" for i in range(TASKS)} | {"both"}


def test_a_deleted_route_loses_its_verdict_and_nothing_else_is_touched(
    engine: Engine, fake: FakeServer, tmp_path: Path
) -> None:
    scene = Scene(engine, fake, tmp_path / "config")
    text = config(fake)
    scene.apply(text)
    scene.round(None)
    scene.probed()
    before = scene.checked_at()

    without = text.replace("  b-07:\n    provider: b\n    model: llama3.1:8b\n", "")
    changed = scene.apply(without)
    assert changed == {("route", "b-07")}
    found = scene.round(changed)

    assert scene.probed() == set()
    assert "b-07" not in {v.task for v in found}
    after = scene.checked_at()
    assert set(before) - set(after) == {"b-07"}
    assert all(after[task] == before[task] for task in after)


def test_the_loop_checks_every_task_at_start_on_its_timer_and_when_asked() -> None:
    loop = ReadinessLoop(
        None, load_registry(), DaemonState("c", "d"), Metrics(), 30.0, lambda: True
    )  # type: ignore[arg-type]
    assert loop._next_round() is None  # the first round checks every task
    loop._decided = True
    loop.poke({("route", "x")})
    loop.poke({("provider", "p")})
    assert loop._next_round() == {("route", "x"), ("provider", "p")}
    loop.poke({("route", "x")})
    loop.poke()  # leadership changed, say
    assert loop._next_round() is None
    assert loop._next_round() is None  # woken by its timer, not poked
    loop._last_full -= 31  # an interval since every task was last checked
    loop.poke({("route", "x")})
    assert loop._next_round() is None
    loop.poke({("route", "y")})
    changed = loop._next_round()
    loop._retry(changed)  # that round failed: the next one owes its rows
    loop.poke({("route", "z")})
    assert loop._next_round() == {("route", "y"), ("route", "z")}


def _verdict(task: str, status: Status, required: bool = False) -> Verdict:
    reason = None if status is Status.ready else Reason.provider_unreachable
    return Verdict(task, status, reason, "", "", "local", "m", required, 1, None)


def test_a_round_rewrites_only_the_series_of_tasks_whose_verdict_changed() -> None:
    from prometheus_client import generate_latest

    metrics = Metrics()
    loop = ReadinessLoop(
        None,  # type: ignore[arg-type]  # publishing reads neither the database nor providers
        load_registry(),
        DaemonState("config", "sqlite://"),
        metrics,
        60.0,
        lambda: True,
    )

    def series() -> set[str]:
        text = generate_latest(metrics.registry).decode()
        return {
            line
            for line in text.splitlines()
            if line.startswith(("reconciler_task_status{", "reconciler_task_servable{"))
        }

    loop._publish([_verdict("a", Status.ready, True), _verdict("b", Status.not_ready)])
    assert series() == {
        'reconciler_task_status{status="ready",task="a"} 1.0',
        'reconciler_task_servable{required="true",task="a"} 1.0',
        'reconciler_task_status{status="not_ready",task="b"} 1.0',
        'reconciler_task_servable{required="false",task="b"} 0.0',
    }
    kept = metrics.task_status.labels("a", "ready")
    loop._publish([_verdict("a", Status.ready, True), _verdict("c", Status.degraded)])
    assert series() == {
        'reconciler_task_status{status="ready",task="a"} 1.0',
        'reconciler_task_servable{required="true",task="a"} 1.0',
        'reconciler_task_status{status="degraded",task="c"} 1.0',
        'reconciler_task_servable{required="false",task="c"} 1.0',
    }
    assert metrics.task_status.labels("a", "ready") is kept  # unchanged: not made again
    loop._publish([_verdict("a", Status.not_ready, False)])
    assert series() == {
        'reconciler_task_status{status="not_ready",task="a"} 1.0',
        'reconciler_task_servable{required="false",task="a"} 0.0',
    }
    # After an apply only the touched tasks are looked at: d is new, a is left as it was.
    everything = [_verdict("a", Status.not_ready, False), _verdict("d", Status.ready)]
    loop._publish(everything, {"d"})
    assert series() == {
        'reconciler_task_status{status="not_ready",task="a"} 1.0',
        'reconciler_task_servable{required="false",task="a"} 0.0',
        'reconciler_task_status{status="ready",task="d"} 1.0',
        'reconciler_task_servable{required="false",task="d"} 1.0',
    }
    loop._publish([_verdict("d", Status.ready)], {"a"})  # a's route deleted
    assert series() == {
        'reconciler_task_status{status="ready",task="d"} 1.0',
        'reconciler_task_servable{required="false",task="d"} 1.0',
    }
