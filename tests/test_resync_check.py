"""The resync timer compares the rows beside the worker, and makes it resync only on a
difference: a full read of the tables never sits between a saved edit and its apply.
On both engines, with the daemon's own worker, in this process.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, update

from reconciler.adapters.db.tables import routes
from reconciler.core.config import ConfigLoader
from reconciler.daemon.metrics import Metrics
from reconciler.daemon.state import DaemonState
from reconciler.daemon.worker import ReconcileWorker, WorkerOptions
from reconciler.service import follow, reconcile
from tests.builders import provider_file, routes_file

TICK_S = 0.05


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # each tick of the timer freezes the heap; the rest of the tests don't want it


def _worker(engine: Engine, directory: Path, leader: bool = True) -> ReconcileWorker:
    return ReconcileWorker(
        engine,
        directory,
        ConfigLoader(),
        DaemonState(str(directory), "db"),
        Metrics(),
        WorkerOptions(resync_s=TICK_S),
        lambda: leader,
    )


def _pokes(worker: ReconcileWorker, checks: int) -> list[bool]:
    """Run the resync timer until it made `checks` comparisons; the pokes it made (resync?)."""
    pokes: list[bool] = []
    worker.poke = lambda resync=False: pokes.append(resync)  # type: ignore[method-assign]

    async def run() -> None:
        stop = asyncio.Event()
        timer = asyncio.create_task(worker.resync_timer(stop))
        start = worker.drift_checks
        while worker.drift_checks < start + checks and len(pokes) < 4 * checks:
            await asyncio.sleep(TICK_S / 2)
        stop.set()
        await timer

    asyncio.run(run())
    return pokes


def _applied(engine: Engine, write_config: Callable[..., Path]) -> ReconcileWorker:
    directory = write_config(
        {"providers.yaml": provider_file("http://127.0.0.1:9"), "routes.yaml": routes_file()}
    )
    worker = _worker(engine, directory)
    assert asyncio.run(worker.cycle(follow.read(worker.config_dir), resync=True)) is None
    assert worker.state.generation == 1
    return worker


def test_with_nothing_drifted_the_timer_only_rereads_the_files(
    engine: Engine, write_config: Callable[..., Path]
) -> None:
    worker = _applied(engine, write_config)
    gc.unfreeze()
    pokes = _pokes(worker, checks=3)
    assert pokes and not any(pokes)  # a plain read of the files each time, never a resync
    assert gc.get_freeze_count() > 0  # and each tick left the heap collected and frozen


def test_a_hand_edit_makes_the_timer_ask_for_a_resync_which_corrects_it(
    engine: Engine, write_config: Callable[..., Path]
) -> None:
    worker = _applied(engine, write_config)
    with engine.begin() as conn:
        conn.execute(update(routes).where(routes.c.task == "scoring").values(model="by-hand"))
    pokes = _pokes(worker, checks=1)
    assert True in pokes

    asyncio.run(worker.cycle(follow.read(worker.config_dir), resync=True))
    with engine.connect() as conn:
        model = conn.execute(routes.select().where(routes.c.task == "scoring")).one().model
    assert model == "llama3.1:8b"
    assert not any(_pokes(worker, checks=1))


def test_before_any_apply_and_on_a_follower_the_timer_does_not_read_the_tables(
    engine: Engine, write_config: Callable[..., Path]
) -> None:
    directory = write_config({"routes.yaml": routes_file()})
    fresh = _worker(engine, directory)
    assert asyncio.run(fresh._differs())  # nothing applied yet: the worker's resync decides
    follower = _worker(engine, directory, leader=False)
    assert not asyncio.run(follower._differs())
    assert (fresh.drift_checks, follower.drift_checks) == (0, 0)


def test_reported_drift_is_cleared_once_the_row_is_put_back(
    engine: Engine, write_config: Callable[..., Path]
) -> None:
    directory = write_config(
        {"providers.yaml": provider_file("http://127.0.0.1:9"), "routes.yaml": routes_file()}
    )
    worker = ReconcileWorker(
        engine,
        directory,
        ConfigLoader(),
        DaemonState(str(directory), "db"),
        Metrics(),
        WorkerOptions(resync_s=TICK_S, drift="report"),
        lambda: True,
    )
    asyncio.run(worker.cycle(follow.read(worker.config_dir), resync=True))

    def set_model(model: str) -> None:
        with engine.begin() as conn:
            conn.execute(update(routes).where(routes.c.task == "scoring").values(model=model))

    set_model("by-hand")
    assert True in _pokes(worker, checks=1)
    asyncio.run(worker.cycle(follow.read(worker.config_dir), resync=True))
    assert worker.state.drift == ["~ route scoring"]  # reported, left alone

    set_model("llama3.1:8b")  # put back by hand
    assert asyncio.run(worker._differs())  # the report is only cleared by a resync
    asyncio.run(worker.cycle(follow.read(worker.config_dir), resync=True))
    assert worker.state.drift == []
    assert not asyncio.run(worker._differs())


def test_an_edit_is_applied_while_the_timers_comparison_is_still_under_way(
    engine: Engine, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = _applied(engine, write_config)
    comparing, release = threading.Event(), threading.Event()
    real_plan = reconcile.plan
    calls = 0

    def held_plan(*args: object, **kwargs: object) -> reconcile.Plan:
        nonlocal calls
        calls += 1
        if calls == 1:  # the timer's comparison: held until the edit is in
            comparing.set()
            release.wait(10)
            comparing.clear()
        return real_plan(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(reconcile, "plan", held_plan)

    async def run() -> tuple[str, bool]:
        stop = asyncio.Event()
        timer = asyncio.create_task(worker.resync_timer(stop))
        try:
            assert await asyncio.to_thread(comparing.wait, 10)
            (worker.config_dir / "routes.yaml").write_text(routes_file("qwen2.5:7b"), "utf-8")
            await asyncio.wait_for(worker.cycle(follow.read(worker.config_dir), False), 5)
            with engine.connect() as conn:
                found = conn.execute(routes.select().where(routes.c.task == "scoring"))
                model = found.one().model
            return model, comparing.is_set()
        finally:
            release.set()
            stop.set()
            await timer

    model, still_comparing = asyncio.run(run())
    assert model == "qwen2.5:7b"
    assert still_comparing  # committed while the comparison was held
