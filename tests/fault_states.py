"""What the fault tests (test_faults.py) compare, and how they run applies.

The database's states (`dump`, its `essence`, `route_contents` and `expected_routes`), the seeded
`Scene` (BEFORE_CONFIG applied plus rows for AFTER_CONFIG to adopt), applies forked with a fault
(`start_apply`), `assert_clean` output, and a `ConsistencyReader` that checks every state a reader
sees while applies run.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, select, text
from sqlalchemy.engine import make_url

from reconciler.adapters.db.engine import make_engine
from reconciler.adapters.db.tables import providers, reconcile_state, revisions, routes
from reconciler.cli import main
from tests.conftest import Result
from tests.db_inspect import url_of
from tests.fault_apply import Apply, Forker, Outcome

TABLES: dict[str, tuple[Table, str]] = {
    "providers": (providers, "name"),
    "routes": (routes, "task"),
    "state": (reconcile_state, "id"),
    "revisions": (revisions, "generation"),
}
VOLATILE = {"id", "created_at", "updated_at", "applied_at", "pid"}
ROUTE_CONTENT = ("provider", "model", "enabled", "required", "protect", "params", "fallbacks")
WRITES = ("INSERT", "UPDATE", "DELETE")
State = dict[str, list[dict[str, Any]]]


def expected_routes(model: str, count: int = 300) -> dict[str, tuple[Any, ...]]:
    return {
        f"task-{i:03d}": ("local", f"{model}-{i}", True, False, False, {}, [], "config")
        for i in range(count)
    }


def dump(engine: Engine) -> State:
    """Every row of the provider, route, state and revision tables, in key order."""
    with engine.connect() as conn:
        return {
            name: [dict(r._mapping) for r in conn.execute(select(t).order_by(t.c[key]))]
            for name, (t, key) in TABLES.items()
        }


def essence(state: State) -> State:
    """A state without what differs between equal applies: ids, timestamps, the pid."""
    return {
        name: [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]
        for name, rows in state.items()
    }


def route_contents(engine: Engine) -> dict[str, tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(select(routes)).all()
    return {r.task: (*(getattr(r, c) for c in ROUTE_CONTENT), r.managed_by) for r in rows}


def cli_apply(engine: Engine, config: Path, *extra: str) -> int:
    return main(["--database-url", url_of(engine), "--config", str(config), "apply", *extra])


def seed_before(engine: Engine, config: Path) -> None:
    """Apply BEFORE_CONFIG, then add an unmanaged provider and route for AFTER_CONFIG to adopt."""
    assert cli_apply(engine, config) == 0
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    stamps = {"managed_by": "legacy", "created_at": moment, "updated_at": moment}
    with engine.begin() as conn:
        conn.execute(
            providers.insert().values(
                name="legacy",
                type="ollama",
                enabled=True,
                protect=False,
                config={"endpoint": {"base_url": "http://127.0.0.1:11434"}},
                **stamps,
            )
        )
        conn.execute(
            routes.insert().values(
                task="t-legacy",
                provider="legacy",
                model="old-model",
                enabled=True,
                required=False,
                protect=False,
                params={},
                fallbacks=[],
                **stamps,
            )
        )


def engine_url_with(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


@dataclass(frozen=True)
class Scene:
    """BEFORE_CONFIG applied plus rows to adopt; what a clean apply of AFTER_CONFIG leaves."""

    before_dir: Path
    after_dir: Path
    before: State  # the database under test, exactly
    after: State  # the essence of the reference database after a clean apply of AFTER_CONFIG


def start_apply(
    forker: Forker, engine: Engine, config: Path, *extra: str, fault: str = ""
) -> Apply:
    """Fork `reconciler --database-url URL --config DIR apply EXTRA` with `fault`."""
    return forker.start(
        ["--database-url", url_of(engine), "--config", str(config), "apply", *extra],
        config.parent / f"run-{uuid.uuid4().hex[:8]}",
        fault,
    )


def assert_clean(result: Result | Outcome) -> None:
    """No traceback and no raw driver error in what a run printed."""
    assert "Traceback" not in result.output, result.output
    assert "OperationalError" not in result.output, result.output
    assert not re.search(r"database is locked(?! by )", result.output), result.output


class ConsistencyReader:
    """Polls, in one statement each time, whether a reader sees a generation without its rows.

    Every apply in these tests writes all `per_apply` routes, so a reader that sees generation
    g >= 1 must see exactly one revision g, `per_apply` routes of generation g, and no route of a
    later generation.
    """

    QUERY = text(
        "SELECT s.generation, "
        "(SELECT count(*) FROM llm_task_routes r WHERE r.generation = s.generation), "
        "(SELECT count(*) FROM reconcile_revisions v WHERE v.generation = s.generation), "
        "(SELECT count(*) FROM llm_task_routes r WHERE r.generation > s.generation) "
        "FROM reconcile_state s WHERE s.id = 1"
    )

    def __init__(self, url: str, per_apply: int) -> None:
        self.engine = make_engine(url)
        self.per_apply = per_apply
        self.seen: set[tuple[int, int, int, int]] = set()
        self.reads = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def read(self) -> tuple[int, int, int, int]:
        with self.engine.connect() as conn:
            generation, rows, revs, later = conn.execute(self.QUERY).one()
        return int(generation), int(rows), int(revs), int(later)

    def consistent(self, seen: tuple[int, int, int, int]) -> bool:
        generation, rows, revs, later = seen
        if generation == 0:
            return (rows, revs, later) == (0, 0, 0)
        return (rows, revs, later) == (self.per_apply, 1, 0)

    def _poll(self) -> None:
        try:
            while not self._stop.is_set():
                self.seen.add(self.read())
                self.reads += 1
                self._stop.wait(0.005)  # leave the CPU to the applies being watched
        except BaseException as exc:  # reported by stop()
            self.errors.append(exc)

    def __enter__(self) -> ConsistencyReader:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.engine.dispose()
        assert not self.errors, self.errors
        assert self.reads > 0
        assert all(self.consistent(s) for s in self.seen), sorted(self.seen)
