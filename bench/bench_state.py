"""Reconcile against a database: no-op reconciles and applies of K changed routes, vs raw SQL.

Per size (N routes, 1,000 per file from `bench.generate`), on SQLite (a file in a temp dir) and
on PostgreSQL (a database of its own, dropped afterwards), migrated and first made equal to the
files by one apply:
- noop: `load_config` with a fresh `ConfigLoader` (every file re-parsed), then `apply`, which
  reads the observed state under the apply lock, plans and finds nothing to do. Floor: the same
  `load_config` + a raw DBAPI SELECT of the provider and route tables. yaml floor (DESIGN 8):
  `yaml.load` with libyaml of every file, the collector paused, + the raw SELECT.
- cached: the same with a loader that has seen every file (no file changed). Floor: reading and
  hashing the files + the raw SELECT.
- apply-K: `apply` of the files with K routes (evenly spread) naming another model, and back:
  runs alternate, so each one changes K routes. Floor: a raw DBAPI `executemany` UPDATE of the
  same K rows (same columns, same values, alternating too) in one transaction.
- apply-K-view: the same with a warm `reconcile.AppliedView`, as the daemon applies: only what
  the changed files declare is read and planned (every run must take that path).

Every run counts the rows written through the engine (cursor.rowcount of each INSERT, UPDATE and
DELETE). A no-op must write none and leave the generation alone; an apply of K routes must write
K rows plus the bookkeeping rows, whatever N is. Anything else fails the benchmark.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import yaml
from sqlalchemy import JSON, Column, Engine, event
from sqlalchemy.engine import make_url

from bench.databases import bench_database, postgres_unreachable
from bench.generate import write_config
from bench.harness import BYTECODE_ENV, Options, Report, Timing, measure, progress, rate, seconds
from reconciler.adapters.db import migrate, store
from reconciler.adapters.db.engine import make_engine
from reconciler.adapters.db.tables import routes as routes_table
from reconciler.adapters.files import load_sources
from reconciler.core.config import ConfigLoader, DesiredState
from reconciler.core.plan import MANAGED, Desired, Kind, desired_items, essence_hash
from reconciler.service import reconcile

NAME = "state"
TITLE = "Reconcile against the database (no-op, apply of K changed routes) vs raw DBAPI SQL"

FULL = (1_000, 10_000, 100_000)
QUICK = (1_000, 10_000)
QUICK_BUDGET_S = 1.0
VIEW_COUNTS = (1, 100)  # apply-K-view: K changed routes applied with a warm AppliedView
ENGINES = ("sqlite", "postgresql")
ROUTES_PER_FILE = 1_000
BOOKKEEPING_ROWS = 2  # per apply that changes something: the generation UPDATE, the revision
MODEL_SUFFIX = "-next"
_WRITES = ("INSERT", "UPDATE", "DELETE")
# What `apply` writes to a changed route: every column but the key, the id and the creation time.
_ROUTE_COLUMNS = tuple(
    c for c in routes_table.columns if c.name not in ("id", "task", "created_at")
)

HEADERS = (
    "case",
    "s",
    "routes/s",
    "floor s",
    "x floor",
    "yaml floor s",
    "x yaml floor",
    "write s",
    "write x floor",
    "rows written",
    "runs",
)


@dataclass
class Writes:
    """Rows written through an engine: cursor.rowcount of every INSERT, UPDATE and DELETE."""

    rows: int = 0
    statements: int = 0
    route_rows: int = 0  # of which in llm_task_routes
    first_at: float | None = None  # perf_counter() when the first write statement started

    def attach(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def reset(self) -> None:
        self.rows, self.statements, self.route_rows, self.first_at = 0, 0, 0, None

    def _before(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if self.first_at is None and _is_write(statement):
            self.first_at = time.perf_counter()

    def _after(
        self, _conn: Any, cursor: Any, statement: str, params: Any, _ctx: Any, many: bool
    ) -> None:
        if _is_write(statement):
            self.statements += 1
            count = cursor.rowcount
            count = count if count >= 0 else (len(params) if many else 1)
            self.rows += count
            if " llm_task_routes " in statement[:40]:
                self.route_rows += count

    def split(self) -> str:
        """`route rows+other rows`, as written by the last reconcile."""
        return f"{self.route_rows}+{self.rows - self.route_rows}"


def _is_write(statement: str) -> bool:
    return statement.lstrip()[:6].upper() in _WRITES


def _raw_value(column: Column[Any], value: Any) -> Any:
    return json.dumps(value) if isinstance(column.type, JSON) and value is not None else value


class RawDatabase:
    """The same database through the bare DBAPI driver (sqlite3 or psycopg), for the floors."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.sqlite = parsed.get_backend_name() == "sqlite"
        if self.sqlite:
            self.connection: Any = sqlite3.connect(str(parsed.database), isolation_level=None)
            self.connection.execute("PRAGMA synchronous = NORMAL")  # as the engine sets it
            mark, as_json, self.begin = "?", "?", "BEGIN IMMEDIATE"
        else:
            conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
            self.connection = psycopg.connect(conninfo, autocommit=True)
            mark, as_json, self.begin = "%s", "%s::json", "BEGIN"
        values = [
            f"{c.name} = {as_json if isinstance(c.type, JSON) else mark}" for c in _ROUTE_COLUMNS
        ]
        self.update = f"UPDATE {routes_table.name} SET {', '.join(values)} WHERE task = {mark}"

    def read(self) -> int:
        """One SELECT of each table, every row fetched; the number of rows."""
        cursor = self.connection.cursor()
        count = 0
        for table in ("llm_provider_configs", "llm_task_routes"):
            cursor.execute(f"SELECT * FROM {table}")
            count += len(cursor.fetchall())
        cursor.close()
        return count

    def update_routes(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """`executemany` of the UPDATE in one transaction; every row must match one route."""
        cursor = self.connection.cursor()
        cursor.execute(self.begin)
        cursor.executemany(self.update, rows)
        written = cursor.rowcount
        cursor.execute("COMMIT")
        cursor.close()
        if written != len(rows):
            raise AssertionError(f"raw UPDATE wrote {written} rows, expected {len(rows)}")

    def rows_of(self, items: Sequence[Desired]) -> list[tuple[Any, ...]]:
        """UPDATE parameters that write `items` as `apply` would (computed once, untimed)."""
        now = datetime.now(UTC)
        provenance = {
            "managed_by": MANAGED,
            "generation": 0,
            "updated_at": now.strftime("%Y-%m-%d %H:%M:%S.%f") if self.sqlite else now,
        }
        rows = []
        for item in items:
            values = {
                **item.essence,
                **provenance,
                "spec_hash": essence_hash(item.essence),
                "source_file": item.source_file,
                "source_line": item.source_line,
            }
            row = [_raw_value(c, values.get(c.name)) for c in _ROUTE_COLUMNS]
            rows.append((*row, item.key))
        return rows

    def close(self) -> None:
        self.connection.close()


@dataclass
class Bed:
    """One database holding exactly the files: its engine, raw connection and write counter."""

    engine_name: str
    routes: int
    config: Path
    engine: Engine
    raw: RawDatabase
    state: DesiredState
    loader: ConfigLoader  # has seen the files, so a variant re-parses only the files it changes
    writes: Writes = field(default_factory=Writes)

    def case(self, what: str) -> str:
        return f"{NAME}/{self.engine_name}/{self.routes}/{what}"

    def sources(self) -> list[tuple[str, bytes]]:
        return load_sources([self.config])

    def generation(self) -> int:
        with self.engine.connect() as conn:
            return store.current_generation(conn)

    def expect_written(self, expected: int, what: str) -> None:
        if self.writes.rows != expected:
            raise AssertionError(
                f"{self.case(what)}: wrote {self.writes.rows} rows in {self.writes.statements} "
                f"statement(s), expected {expected}"
            )

    def noop(self, loader: ConfigLoader, what: str) -> reconcile.ApplyResult:
        """Load the files and apply them; the database already equals them."""
        state = reconcile.load_config([self.config], loader)
        result = reconcile.apply(self.engine, state)
        self.expect_written(0, what)
        if result.applied or result.plan.has_changes:
            raise AssertionError(f"{self.case(what)}: the plan has changes: {result.plan}")
        return result


def run(options: Options) -> Report:
    sizes = QUICK if options.quick else FULL
    if options.quick:
        options = Options(options.quick, options.filters, options.repeats, QUICK_BUDGET_S)
    report = Report(title=TITLE + "  (case: state/ENGINE/ROUTES/WHAT; medians)", headers=HEADERS)
    for engine_name in ENGINES:
        wanted = [n for n in sizes if any(map(options.selected, _case_names(engine_name, n)))]
        if not wanted:
            continue
        unreachable = postgres_unreachable() if engine_name == "postgresql" else None
        if unreachable:
            progress(f"{NAME}/postgresql: skipped, {unreachable}")
            report.notes.append(f"postgresql: skipped, {unreachable}")
            continue
        with _pinned_migrations():
            for routes in wanted:
                _run_size(engine_name, routes, options, report)
    report.notes += NOTES
    return report


def _run_size(engine_name: str, routes: int, options: Options, report: Report) -> None:
    progress(f"{NAME}/{engine_name}/{routes} ...")
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp,
        bench_database(engine_name, Path(tmp), "state.db") as url,
        _bed(url, routes, Path(tmp)) as bed,
    ):
        first = _initial_apply(bed)
        report.rows += _noop_rows(bed, options)
        report.rows += [r for k in _change_counts(routes) if (r := _apply_row(bed, k, options))]
        for k in VIEW_COUNTS:
            report.rows += [r] if (r := _apply_row(bed, k, options, view=True)) else []
    took = f"{first}; all of {engine_name}/{routes}: {time.perf_counter() - started:.0f} s"
    progress(took)
    report.notes.append(took)


NOTES = [
    "noop: load_config (fresh ConfigLoader) + apply that finds nothing to do; floor: the same "
    "load_config + raw SELECT * of both tables; yaml floor: libyaml yaml.load of every file, gc "
    "paused, + raw SELECT. cached: noop with a loader that has seen every file; floor: reading "
    "and sha256 of the files + raw SELECT.",
    "apply-K: apply of the files with K routes changed (the loaded state handed in: lock, read, "
    "plan, write, revision, commit; no git lookup); routes/s = K / s; floor: raw executemany "
    "UPDATE of the same K rows and columns in one transaction; write s: from the first write "
    "statement to the commit. rows written: route rows + bookkeeping rows (generation, revision).",
    "apply-K-view: apply-K with a warm reconcile.AppliedView (the daemon's path): only the "
    "changed files' items are read (by key) and planned, after a fingerprint query of the "
    "tables; every timed run must take that path.",
    "cli-noop: `python -m reconciler apply` as a process, nothing to change (start-up "
    "included); floor: a process that parses every file with libyaml's C loader and SELECTs "
    "both tables with the bare driver, collector on (as a script runs); yaml floor: the same "
    "with the collector paused.",
    "runs: timed runs of the reconcile (fewer when a run is long).",
]


def _case_names(engine_name: str, routes: int) -> list[str]:
    whats = ["noop", "cached", "cli-noop", *(f"apply-{k}" for k in _change_counts(routes))]
    whats += [f"apply-{k}-view" for k in VIEW_COUNTS]
    return [f"{NAME}/{engine_name}/{routes}/{what}" for what in whats]


def _change_counts(routes: int) -> list[int]:
    counts = {1, 100, routes // 100, *((10_000,) if routes >= 10_000 else ())}
    return sorted(k for k in counts if 1 <= k <= routes)


@contextmanager
def _pinned_migrations() -> Iterator[None]:
    """Use a copy of migrations/ for the whole run: `apply` checks the schema against the newest
    revision on disk each time, and a revision added meanwhile would fail a long run."""
    previous = os.environ.get(migrate.MIGRATIONS_ENV)
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-migrations-") as tmp:
        pinned = Path(tmp, "migrations")
        shutil.copytree(migrate.migrations_dir(), pinned, ignore=shutil.ignore_patterns("*.pyc"))
        os.environ[migrate.MIGRATIONS_ENV] = str(pinned)
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop(migrate.MIGRATIONS_ENV, None)
            else:
                os.environ[migrate.MIGRATIONS_ENV] = previous


@contextmanager
def _bed(url: str, routes: int, tmp: Path) -> Iterator[Bed]:
    config = tmp / "config"
    write_config(config, routes, max(1, routes // ROUTES_PER_FILE))
    engine = make_engine(url)
    raw = None
    try:
        migrate.upgrade(engine)
        raw = RawDatabase(url)
        loader = ConfigLoader()
        state = reconcile.load_config([config], loader)
        bed = Bed(engine.dialect.name, routes, config, engine, raw, state, loader)
        bed.writes.attach(engine)
        yield bed
    finally:
        if raw is not None:
            raw.close()
        engine.dispose()


def _initial_apply(bed: Bed) -> str:
    start = time.perf_counter()
    result = reconcile.apply(bed.engine, bed.state)
    elapsed = time.perf_counter() - start
    bed.expect_written(bed.routes + len(bed.state.providers) + BOOKKEEPING_ROWS, "initial")
    if not result.applied:
        raise AssertionError(f"{bed.case('initial')}: the first apply wrote nothing")
    bed.writes.reset()
    return f"{bed.engine_name}/{bed.routes}: first apply (create every row) {elapsed:.2f} s"


def _noop_rows(bed: Bed, options: Options) -> list[list[str]]:
    rows = []
    generation = bed.generation()
    if options.selected(case := bed.case("noop")):
        progress(f"{case} ...")
        fresh = measure(lambda: bed.noop(ConfigLoader(), "noop"), options, setup=bed.writes.reset)
        floor = measure(lambda: (ConfigLoader().load(bed.sources()), bed.raw.read()), options)
        yaml_floor = measure(lambda: _yaml_floor(bed), options, pause_gc=True)
        rows.append(_row(case, bed.routes, fresh, floor, yaml_floor, None, "0"))
    if options.selected(case := bed.case("cached")):
        progress(f"{case} ...")
        loader = ConfigLoader()
        reconcile.load_config([bed.config], loader)
        parsed = loader.parsed_files
        cached = measure(lambda: bed.noop(loader, "cached"), options, setup=bed.writes.reset)
        if loader.parsed_files != parsed:
            raise AssertionError(f"{case}: the cached run parsed a file again")
        floor = measure(lambda: _hash_floor(bed), options)
        rows.append(_row(case, bed.routes, cached, floor, None, None, "0"))
    if options.selected(case := bed.case("cli-noop")):
        progress(f"{case} ...")
        rows.append(_cli_noop_row(bed, case, options))
    if bed.generation() != generation:
        raise AssertionError(f"{bed.case('noop')}: a no-op reconcile bumped the generation")
    return rows


# The floor of a CLI no-op apply, as a process too: parse every file with libyaml's C loader and
# SELECT both tables with the bare driver. argv: config dir, database URL, "paused" or "on" (gc).
CLI_FLOOR = """
import gc, sys
from pathlib import Path
import yaml
if sys.argv[3] == "paused":
    gc.disable()
files = sorted(p for p in Path(sys.argv[1]).rglob("*.yaml"))
documents = [yaml.load(p.read_bytes(), Loader=yaml.CSafeLoader) for p in files]
url = sys.argv[2]
if url.startswith("sqlite"):
    import sqlite3
    connection = sqlite3.connect(url.split("///", 1)[1])
else:
    import psycopg
    connection = psycopg.connect(url.replace("postgresql+psycopg", "postgresql"))
cursor = connection.cursor()
for table in ("llm_provider_configs", "llm_task_routes"):
    cursor.execute("SELECT * FROM " + table)
    rows = cursor.fetchall()
"""


def _cli_noop_row(bed: Bed, case: str, options: Options) -> list[str]:
    """`reconciler apply` with nothing to change, as a user runs it (start-up included), against
    a process that parses the same files with the C loader and SELECTs both tables."""
    url = bed.engine.url.render_as_string(hide_password=False)
    command = [sys.executable, "-m", "reconciler", "--database-url", url]
    command += ["--config", str(bed.config), "apply"]

    def apply() -> None:
        done = subprocess.run(
            command, capture_output=True, text=True, check=False, env=BYTECODE_ENV
        )
        if done.returncode != 0 or "No changes" not in done.stdout:
            raise AssertionError(f"{case}: {done.returncode}\n{done.stdout}\n{done.stderr}")

    def floor(gc: str) -> None:
        floor_args = [sys.executable, "-c", CLI_FLOOR, str(bed.config), url, gc]
        subprocess.run(floor_args, capture_output=True, check=True, env=BYTECODE_ENV)

    apply()  # warm the file cache and write the bytecode, untimed
    floor("on")
    timing = measure(apply, options)
    natural = measure(lambda: floor("on"), options)
    paused = measure(lambda: floor("paused"), options)
    return _row(case, bed.routes, timing, natural, paused, None, "0")


def _yaml_floor(bed: Bed) -> tuple[list[Any], int]:
    documents = [yaml.load(data, Loader=yaml.CSafeLoader) for _, data in bed.sources()]
    return documents, bed.raw.read()


def _hash_floor(bed: Bed) -> tuple[list[str], int]:
    digests = [hashlib.sha256(data).hexdigest() for _, data in bed.sources()]
    return digests, bed.raw.read()


def _apply_row(bed: Bed, k: int, options: Options, view: bool = False) -> list[str]:
    case = bed.case(f"apply-{k}-view" if view else f"apply-{k}")
    if not options.selected(case):
        return []
    progress(f"{case} ...")
    changed, before, after = _changed_state(bed, k)
    expected = k + BOOKKEEPING_ROWS
    states = (changed, bed.state)  # runs alternate: each applies K changed routes
    write_times: list[float] = []
    written: list[str] = []
    applied_view = reconcile.AppliedView() if view else None
    if applied_view is not None:
        reconcile.apply(bed.engine, bed.state, view=applied_view)  # warm: finds nothing to do

    def apply() -> reconcile.ApplyResult:
        result = reconcile.apply(bed.engine, states[len(write_times) % 2], view=applied_view)
        done = time.perf_counter()
        bed.expect_written(expected, f"apply-{k}")
        if bed.writes.route_rows != k:
            raise AssertionError(f"{case}: wrote {bed.writes.route_rows} route rows, not {k}")
        write_times.append(done - (bed.writes.first_at or done))
        written.append(bed.writes.split())
        return result

    timing = measure(apply, options, setup=bed.writes.reset)
    if applied_view is not None and applied_view.partial_plans != len(write_times):
        raise AssertionError(f"{case}: {applied_view.full_plans} run(s) planned everything")
    if len(write_times) % 2:
        bed.writes.reset()
        reconcile.apply(bed.engine, bed.state)
        bed.expect_written(expected, f"apply-{k} restore")
    updates = (bed.raw.rows_of(after), bed.raw.rows_of(before))
    floor_runs = itertools.count()
    floor = measure(lambda: bed.raw.update_routes(updates[next(floor_runs) % 2]), options)
    if next(floor_runs) % 2:
        bed.raw.update_routes(updates[1])
    bed.writes.reset()
    bed.noop(bed.loader, f"apply-{k} restore")  # the database equals the files again
    write_s = statistics.median(write_times)
    return _row(case, k, timing, floor, None, write_s, "/".join(sorted(set(written))))


def _changed_state(bed: Bed, k: int) -> tuple[DesiredState, list[Desired], list[Desired]]:
    """The files' state with `k` routes, evenly spread, naming another model; the k items
    before and after."""
    tasks = list(bed.state.routes)
    chosen = {tasks[i * len(tasks) // k] for i in range(k)}
    sources = [(name, _rename_models(data, chosen)) for name, data in bed.sources()]
    changed = bed.loader.load(sources)

    def items(state: DesiredState) -> list[Desired]:
        return [d for d in desired_items(state) if d.kind is Kind.route and d.key in chosen]

    before, after = items(bed.state), items(changed)
    if len(after) != k or any(a.essence == b.essence for a, b in zip(before, after, strict=True)):
        raise AssertionError(f"{bed.case(f'apply-{k}')}: the variant does not change {k} routes")
    return changed, before, after


def _rename_models(data: bytes, tasks: set[str]) -> bytes:
    """`model: X` -> `model: X-next` for the primary model of each route in `tasks`."""
    lines = data.decode().splitlines(keepends=True)
    task = None
    for index, line in enumerate(lines):
        if line.startswith("  ") and not line.startswith("   ") and line.endswith(":\n"):
            task = line.strip()[:-1]
        elif task in tasks and line.startswith("    model: "):
            lines[index] = line.rstrip("\n") + MODEL_SUFFIX + "\n"
    return "".join(lines).encode()


def _row(
    case: str,
    count: int,
    timing: Timing,
    floor: Timing,
    yaml_floor: Timing | None,
    write_s: float | None,
    written: str,
) -> list[str]:
    return [
        case,
        seconds(timing.median),
        rate(count, timing.median),
        seconds(floor.median),
        f"{timing.median / floor.median:.2f}",
        seconds(yaml_floor.median) if yaml_floor else "",
        f"{timing.median / yaml_floor.median:.2f}" if yaml_floor else "",
        seconds(write_s) if write_s is not None else "",
        f"{write_s / floor.median:.2f}" if write_s is not None else "",
        written,
        str(timing.runs),
    ]
