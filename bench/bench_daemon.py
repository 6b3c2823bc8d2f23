"""`reconciler run` as a process: save-to-commit latency of one edit, and CPU when idle.

Per case (a directory from `bench.generate`; a SQLite file in a temp dir, or a PostgreSQL database
of its own, dropped afterwards):
- edits: the daemon (its own HTTP port, `--probe-interval 3600`) applies the files once; then,
  one at a time and each once the daemon is quiet (the readiness round the last apply set off has
  stored its verdicts and no CPU was used for QUIET_WINDOW_S), one route's primary model in one
  file is changed by an atomic replace (a dotfile written, then `Path.replace`), and a raw DBAPI
  connection (sqlite3 / psycopg, autocommit) polls that route's model every POLL_S. Latency: from
  the replace to the start of the first poll that sees the new model. cpu/edit: the daemon's CPU
  from the replace until quiet again (the apply and the readiness round after it).
- floor: the same kind of single change after the daemon stopped, in-process: reading the files,
  `ConfigLoader.load` by a loader that has seen every file (one file re-parsed) and
  `reconcile.apply` with the config dir and a warm `reconcile.AppliedView`, as the daemon calls
  it (only what the changed file declares is read and planned). What the daemon must at least
  spend; the rest of the latency is its waiting (watcher debounce, settle reads) and extra work.
- idle: the daemon on the example config (`config/`, SQLite) with the default probe interval,
  left alone for IDLE_S once quiet: CPU seconds (utime + stime of the process and its reaped
  children, from /proc/PID/stat) per minute and as a share of one core.

Every edit must reach the database with its own model within EDIT_TIMEOUT_S and be exactly one
revision that updates one route; afterwards every route in the database must carry the model the
files name. Anything else fails the benchmark.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy.engine import make_url

from bench.databases import bench_database, postgres_unreachable
from bench.generate import write_config
from bench.harness import Options, Report, Timing, measure, progress
from reconciler.adapters.db.engine import make_engine
from reconciler.adapters.files import load_sources
from reconciler.adapters.plugins import load_registry
from reconciler.core.config import ConfigLoader
from reconciler.core.plan import Op
from reconciler.daemon.metrics import Metrics
from reconciler.daemon.state import DaemonState
from reconciler.daemon.worker import ReconcileWorker, WorkerOptions
from reconciler.service import follow, reconcile

NAME = "daemon"
TITLE = "Save-to-commit latency of `reconciler run` (atomic save -> route row committed), idle CPU"

FULL: tuple[tuple[str, int, int], ...] = (("sqlite", 1_000, 10), ("sqlite", 10_000, 10))
FULL += (("sqlite", 10_000, 100), ("postgresql", 1_000, 10), ("postgresql", 10_000, 10))
FULL += (("postgresql", 10_000, 100),)
QUICK = (("sqlite", 1_000, 10), ("postgresql", 1_000, 10))
EDITS = 50  # each way; at 10,000 routes an edit and the readiness round after it take ~5 s
IDLE_S = 10.0
QUICK_IDLE_S = 5.0
QUICK_BUDGET_S = 1.0
TARGET_MS = (200.0, 500.0)  # p50, p99: the issue
# p50, p99 (ms; None: none set) by ROUTESxFILES: DESIGN 8 and issue 13.
GOALS: dict[str, tuple[float, float | None]] = {
    "10000x100": (100.0, 200.0),
    "1000x10": (50.0, None),
}

MEMORY_ROUTES, MEMORY_FILES = 10_000, 100
MEMORY_EDITS, QUICK_MEMORY_EDITS, MEMORY_STEP = 1_000, 100, 250

POLL_S = 0.001
EDIT_TIMEOUT_S = 30.0
START_TIMEOUT_S = 600.0
QUIET_WINDOW_S = 0.3
QUIET_CPU_S = 0.01  # at most one clock tick in the window
QUIET_TIMEOUT_S = 120.0
ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config"
_TASK = re.compile(r"^  ([^\s:#]+):$", re.MULTILINE)
_SUFFIX = re.compile(r"-e\d+$")

HEADERS = (
    *("case", "edits", "p50 ms", "p99 ms", "max ms", "p50 x target", "p99 x target"),
    *("floor ms", "p50 - floor ms", "cpu/edit ms", "no-change ms", "no-change floor ms"),
    *("rss MB start/end", "idle cpu s/min", "idle % core", "runs"),
)


@dataclass
class Process:
    """`reconciler run` started by this benchmark, its HTTP port and its log file."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def status(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/api/v1/status"
        body: dict[str, Any] = httpx.get(url, timeout=5, trust_env=False).json()
        return body

    def cpu_s(self) -> float:
        """utime + stime of the process and of its children it waited for, in seconds."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text(encoding="ascii")
        fields = stat.rsplit(")", 1)[1].split()
        return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        """Resident memory of the process, in MB (VmRSS)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS in /proc/PID/status")

    def alive(self) -> None:
        if self.proc.poll() is not None:
            log = self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
            raise AssertionError(f"the daemon exited ({self.proc.returncode}):\n{log}")

    def wait_applied(self, timeout: float) -> dict[str, Any]:
        """The status once the files as last read are applied without error."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.alive()
            try:
                status = self.status()
            except httpx.HTTPError:
                status = {}
            applied = status.get("applied_digest") == status.get("config_digest")
            if status.get("generation") and applied and status["error"] is None:
                return status
            time.sleep(0.05)
        raise AssertionError(f"the daemon applied nothing in {timeout:g} s; log: {self.log_path}")

    def wait_quiet(self, ready: Callable[[], bool] = lambda: True) -> None:
        """Until `ready()` and no CPU used for QUIET_WINDOW_S."""
        deadline = time.monotonic() + QUIET_TIMEOUT_S
        window: list[float] = []
        while time.monotonic() < deadline:
            self.alive()
            window = [*window[-int(QUIET_WINDOW_S / 0.05) :], self.cpu_s()]
            full = len(window) > QUIET_WINDOW_S / 0.05
            if full and window[-1] - window[0] <= QUIET_CPU_S and ready():
                return
            time.sleep(0.05)
        raise AssertionError(f"the daemon stayed busy for {QUIET_TIMEOUT_S:g} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def _daemon(url: str, config: Path, log_path: Path, *extra: str) -> Iterator[Process]:
    port = _free_port()
    args = [sys.executable, "-m", "reconciler", "--database-url", url, "--config", str(config)]
    args += ["run", "--http", f"127.0.0.1:{port}", "--migrate", *extra]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    process = Process(proc, port, log_path)
    try:
        yield process
    finally:
        process.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class RawDatabase:
    """The benchmark's own view of the database: the bare DBAPI driver, autocommit."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            self.connection: Any = sqlite3.connect(str(parsed.database), isolation_level=None)
            self.mark = "?"
        else:
            conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
            self.connection = psycopg.connect(conninfo, autocommit=True)
            self.mark = "%s"
        self.cursor = self.connection.cursor()

    def one(self, sql: str, *params: Any) -> Any:
        self.cursor.execute(sql.replace("?", self.mark), params)
        return self.cursor.fetchone()

    def model(self, task: str) -> str | None:
        row = self.one("SELECT model FROM llm_task_routes WHERE task = ?", task)
        return row[0] if row else None

    def models(self) -> dict[str, str]:
        self.cursor.execute("SELECT task, model FROM llm_task_routes")
        return dict(self.cursor.fetchall())

    def generation(self) -> int:
        return int(self.one("SELECT generation FROM reconcile_state")[0])

    def readiness_caught_up(self) -> bool:
        """The readiness round after the last apply has stored its verdicts."""
        row = self.one("SELECT max(generation) FROM task_readiness")
        return row[0] is not None and row[0] >= self.generation()

    def revisions_after(self, generation: int) -> tuple[int, int, int]:
        """(revisions, routes updated, rows created + deleted + adopted) after `generation`."""
        sql = "SELECT count(*), coalesce(sum(updated), 0), "
        sql += "coalesce(sum(created + deleted + adopted), 0) "
        row = self.one(sql + "FROM reconcile_revisions WHERE generation > ?", generation)
        return int(row[0]), int(row[1]), int(row[2])

    def close(self) -> None:
        self.connection.close()


@dataclass
class RouteFiles:
    """The route files as this benchmark last wrote them; every edit goes through here."""

    paths: list[Path]
    texts: list[str] = field(default_factory=list)
    edits: int = 0

    def __post_init__(self) -> None:
        self.texts = [p.read_text(encoding="utf-8") for p in self.paths]

    def edit(self) -> tuple[str, str, float]:
        """Change one route's model by an atomic replace: (task, new model, perf_counter after)."""
        index = self.edits % len(self.paths)
        body = self.texts[index]
        tasks = _TASK.findall(body)
        task = tasks[(self.edits // len(self.paths) * 7 + len(tasks) // 2) % len(tasks)]
        start = body.index(f"\n  {task}:\n")
        line = body.index("\n    model: ", start) + len("\n    model: ")
        end = body.index("\n", line)
        model = f"{_SUFFIX.sub('', body[line:end])}-e{self.edits}"
        self.texts[index] = body[:line] + model + body[end:]
        path = self.paths[index]
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(self.texts[index], encoding="utf-8")
        temporary.replace(path)
        done = time.perf_counter()
        self.edits += 1
        return task, model, done


def run(options: Options) -> Report:
    quick = options.quick
    if quick:
        options = Options(options.quick, options.filters, options.repeats, QUICK_BUDGET_S)
    report = Report(title=TITLE + "  (case: daemon/ENGINE/ROUTESxFILES)", headers=HEADERS)
    for engine_name, routes, files in QUICK if quick else FULL:
        case = f"{NAME}/{engine_name}/{routes}x{files}"
        if not options.selected(case):
            continue
        unreachable = postgres_unreachable() if engine_name == "postgresql" else None
        if unreachable:
            progress(f"{case}: skipped, {unreachable}")
            report.notes.append(f"{case}: skipped, {unreachable}")
            continue
        progress(f"{case} ...")
        load = os.getloadavg()[0]
        report.rows.append(_latency_row(case, engine_name, routes, files, EDITS, options))
        report.notes.append(_load_note(case, load))
    if options.selected(case := f"{NAME}/memory/sqlite/{MEMORY_ROUTES}x{MEMORY_FILES}"):
        progress(f"{case} ...")
        report.rows.append(_memory_row(case, QUICK_MEMORY_EDITS if quick else MEMORY_EDITS))
        report.notes.append(
            f"{case}: resident memory (MB) once the files are applied, then every "
            f"{MEMORY_STEP} edits (each edit waits for its commit, not for quiet); the last "
            "column of `rss` is after the last edit."
        )
    if options.selected(case := f"{NAME}/idle/example"):
        progress(f"{case} ...")
        load = os.getloadavg()[0]
        report.rows.append(_idle_row(case, QUICK_IDLE_S if quick else IDLE_S))
        report.notes.append(_load_note(case, load))
    if report.rows:
        report.notes[:0] = _notes(report.rows)
    return report


def _latency_row(
    case: str, engine_name: str, routes: int, files: int, edits: int, options: Options
) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp_name:
        tmp = Path(tmp_name)
        config = tmp / "config"
        route_files = RouteFiles(write_config(config, routes, files)[1:])
        with bench_database(engine_name, tmp, "state.db") as url:
            raw = RawDatabase(url)
            try:
                latencies, cpu, rss = _edits(url, config, route_files, raw, edits, tmp)
                floor = _floor(url, config, route_files, raw, options)
                unchanged, unchanged_floor = _no_change(url, config, raw, options)
            finally:
                raw.close()
    p50, p99 = statistics.median(latencies), _p99(latencies)
    return [
        case,
        str(len(latencies)),
        f"{p50 * 1000:.1f}",  # tenths: a goal is judged on them
        f"{p99 * 1000:.1f}",
        f"{max(latencies) * 1000:.0f}",
        f"{p50 * 1000 / TARGET_MS[0]:.2f}",
        f"{p99 * 1000 / TARGET_MS[1]:.2f}",
        f"{floor.ms:.0f}",
        f"{(p50 - floor.median) * 1000:.0f}",
        f"{statistics.median(cpu) * 1000:.0f}",
        f"{unchanged.ms:.1f}",
        f"{unchanged_floor.ms:.1f}",
        f"{rss[0]:.0f}/{rss[1]:.0f}",
        "",
        "",
        str(floor.runs),
    ]


def _edits(
    url: str, config: Path, files: RouteFiles, raw: RawDatabase, edits: int, tmp: Path
) -> tuple[list[float], list[float], tuple[float, float]]:
    """Latency and daemon CPU of each of `edits` edits, one at a time; the daemon's resident
    memory (MB) once it applied the files, and after the edits."""
    latencies, cpu = [], []
    with _daemon(url, config, tmp / "daemon.log", "--probe-interval", "3600") as daemon:
        daemon.wait_applied(START_TIMEOUT_S)
        daemon.wait_quiet(raw.readiness_caught_up)
        rss_start = daemon.rss_mb()
        first = raw.generation()
        for _ in range(edits):
            before = daemon.cpu_s()
            task, model, saved = files.edit()
            latencies.append(_committed(raw, daemon, task, model, saved))
            daemon.wait_quiet(raw.readiness_caught_up)
            cpu.append(daemon.cpu_s() - before)
        rss = (rss_start, daemon.rss_mb())
    revisions = raw.revisions_after(first)
    if revisions != (edits, edits, 0):
        raise AssertionError(f"{edits} edits made (revisions, updated, other) = {revisions}")
    _check_models(config, raw, "after the daemon's edits")
    return latencies, cpu, rss


def _committed(raw: RawDatabase, daemon: Process, task: str, model: str, saved: float) -> float:
    """Seconds from `saved` to the start of the first poll that reads `model` for `task`."""
    polls = 0
    while (asked := time.perf_counter()) - saved < EDIT_TIMEOUT_S:
        if raw.model(task) == model:
            return asked - saved
        polls += 1
        if polls % 1000 == 0:
            daemon.alive()
        time.sleep(POLL_S)
    raise AssertionError(f"{task}: model {model} not in the database {EDIT_TIMEOUT_S:g} s after")


def _floor(url: str, config: Path, files: RouteFiles, raw: RawDatabase, options: Options) -> Timing:
    """One edit applied in-process: read the files, warm loader, `reconcile.apply`."""
    engine = make_engine(url)
    try:
        loader = ConfigLoader(load_registry())
        view = reconcile.AppliedView()
        reconcile.apply(engine, loader.load(load_sources([config])), view=view)

        def apply() -> reconcile.ApplyResult:
            state = loader.load(load_sources([config]))
            result = reconcile.apply(engine, state, lock_timeout=10.0, config_dir=config, view=view)
            if not result.applied or result.plan.count(Op.update) != 1:
                raise AssertionError(f"the floor apply did not update one route: {result.plan}")
            if view.full_plans != 1:
                raise AssertionError("the floor apply read and planned everything")
            return result

        def edit() -> None:
            files.edit()

        timing = measure(apply, options, setup=edit)
    finally:
        engine.dispose()
    _check_models(config, raw, "after the floor's edits")
    return timing


def _no_change(url: str, config: Path, raw: RawDatabase, options: Options) -> tuple[Timing, Timing]:
    """A daemon cycle in which no file changed (an event that left the bytes alone), by the
    daemon's own worker after it applied the files; and its floor: reading and hashing every
    file plus one raw SELECT of the generation."""
    engine = make_engine(url)
    try:
        worker = ReconcileWorker(
            engine,
            config,
            ConfigLoader(load_registry()),
            DaemonState(str(config), url),
            Metrics(),
            WorkerOptions(),
            lambda: True,
        )

        def cycle() -> None:
            if asyncio.run(worker.cycle(follow.read(worker.config_dir), resync=False)) is not None:
                raise AssertionError("a cycle with no change asked to be retried")

        cycle()  # the first one applies (nothing to change) and remembers what it applied
        generation = raw.generation()
        timing = measure(cycle, options)
        if raw.generation() != generation or worker.state.error is not None:
            raise AssertionError(f"a cycle with no change wrote or failed: {worker.state.error}")
    finally:
        engine.dispose()

    def floor() -> int:
        for _, data in load_sources([config]):
            hashlib.sha256(data).digest()
        return raw.generation()

    return timing, measure(floor, options)


def _check_models(config: Path, raw: RawDatabase, when: str) -> None:
    state = ConfigLoader(load_registry()).load(load_sources([config]))
    wanted = {task: route.spec.model for task, route in state.routes.items()}
    found = raw.models()
    wrong = [task for task, model in wanted.items() if found.get(task) != model]
    if wrong or len(found) != len(wanted):
        raise AssertionError(f"{when}: {len(wrong)} route(s) differ from the files: {wrong[:5]}")


def _memory_row(case: str, edits: int) -> list[str]:
    """The daemon's resident memory over `edits` edits of one route each."""
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp_name:
        tmp = Path(tmp_name)
        config = tmp / "config"
        files = RouteFiles(write_config(config, MEMORY_ROUTES, MEMORY_FILES)[1:])
        url = f"sqlite:///{tmp / 'memory.db'}"
        raw = RawDatabase(url)
        try:
            with _daemon(url, config, tmp / "daemon.log", "--probe-interval", "3600") as daemon:
                daemon.wait_applied(START_TIMEOUT_S)
                daemon.wait_quiet(raw.readiness_caught_up)
                samples = [daemon.rss_mb()]
                for done in range(1, edits + 1):
                    task, model, saved = files.edit()
                    _committed(raw, daemon, task, model, saved)
                    if done % min(MEMORY_STEP, edits) == 0:
                        daemon.wait_quiet(raw.readiness_caught_up)
                        samples.append(daemon.rss_mb())
        finally:
            raw.close()
    blank = [""] * 11
    rss = "/".join(f"{mb:.0f}" for mb in samples)
    return [case, str(edits), *blank[:10], rss, "", "", ""][: len(HEADERS)]


def _idle_row(case: str, idle_s: float) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp_name:
        tmp = Path(tmp_name)
        config = tmp / "config"
        shutil.copytree(EXAMPLE, config)
        with _daemon(f"sqlite:///{tmp / 'idle.db'}", config, tmp / "daemon.log") as daemon:
            daemon.wait_applied(START_TIMEOUT_S)
            daemon.wait_quiet()
            cpu, started = daemon.cpu_s(), time.perf_counter()
            time.sleep(idle_s)
            cpu, wall = daemon.cpu_s() - cpu, time.perf_counter() - started
    share = cpu / wall
    blank = [""] * 12
    return [case, *blank, f"{share * 60:.2f}", f"{share * 100:.2f}", f"{wall:.0f} s"]


def _load_note(case: str, before: float) -> str:
    """The machine's 1-minute load average around a case: other work skews every figure."""
    cpus = len(os.sched_getaffinity(0))
    return f"{case}: load average {before:.1f} before, {os.getloadavg()[0]:.1f} after ({cpus} CPUs)"


def _p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


def _notes(rows: list[Any]) -> list[str]:
    notes = [
        f"latency: atomic save -> the route's new model committed, polled by raw DBAPI every "
        f"{POLL_S * 1000:g} ms; each edit starts once the daemon is quiet. x target: p50 / "
        f"{TARGET_MS[0]:g} ms, p99 / {TARGET_MS[1]:g} ms (the issue).",
        "floor: the same one-route change applied in-process (read files, warm ConfigLoader, "
        "reconcile.apply with the config dir and a warm AppliedView); p50 - floor: what the "
        "daemon adds (debounce, settle reads, extra plans). cpu/edit: daemon CPU per edit, "
        "median, incl. the readiness round each apply sets off. runs: timed floor runs; idle: "
        "wall seconds measured.",
        "idle: the example config, SQLite, default probe interval, after start-up settled.",
    ]
    for row in rows:
        size = row[0].rsplit("/", 1)[-1]
        if size in GOALS and "/memory/" not in row[0]:
            p50_goal, p99_goal = GOALS[size]
            note = f"goal at {size}: p50 under {p50_goal:g} ms"
            note += f", p99 under {p99_goal:g} ms" if p99_goal is not None else ""
            note += f"; {row[0]}: p50 x {float(row[2]) / p50_goal:.2f}"
            note += f", p99 x {float(row[3]) / p99_goal:.2f}" if p99_goal is not None else ""
            notes.append(note)
    return notes
