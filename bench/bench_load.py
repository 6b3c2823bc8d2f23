"""Load and validate N routes over F files with `ConfigLoader`, against raw libyaml parsing.

Per case (a directory from `bench.generate`, read once; only the pure loading is timed):
- floor: `yaml.load(data, Loader=yaml.CSafeLoader)` of every file's bytes, the collector
  running as usual, and again with it paused (the loader pauses it while parsing);
- load: `ConfigLoader().load(files)`, a fresh loader per run so nothing is cached;
- cached: a second `load` of the same files by a loader that has seen them (no file changed:
  hashing, merging and cross-checking only).

Ratios are load time / floor time: below 1 means faster than a plain `yaml.load`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.generate import write_config
from bench.harness import Options, Report, Timing, measure, progress, rate, seconds
from reconciler.adapters.files import load_sources
from reconciler.core.config import ConfigLoader, DesiredState
from reconciler.core.yaml_problems import MAX_BYTES

NAME = "load"
TITLE = "Parse and validate config files (ConfigLoader) vs raw libyaml yaml.load"

FULL = ((1_000, 1), (1_000, 10), (1_000, 100))
FULL += ((10_000, 1), (10_000, 10), (10_000, 100))
FULL += ((100_000, 1), (100_000, 10), (100_000, 100))
QUICK = ((1_000, 1), (1_000, 10), (10_000, 10))
QUICK_BUDGET_S = 1.0

HEADERS = (
    "case",
    "MB",
    "floor s",
    "floor gc-off s",
    "load s",
    "routes/s",
    "MB/s",
    "x floor",
    "x floor gc-off",
    "cached ms",
    "runs",
)


@dataclass(frozen=True)
class Case:
    routes: int
    files: int

    @property
    def name(self) -> str:
        return f"{NAME}/{self.routes}x{self.files}"


def run(options: Options) -> Report:
    sizes = QUICK if options.quick else FULL
    if options.quick:
        options = Options(options.quick, options.filters, options.repeats, QUICK_BUDGET_S)
    report = Report(
        title=TITLE + "  (case: load/ROUTESxFILES; medians)",
        headers=HEADERS,
        notes=[
            "floor: yaml.load(data, Loader=yaml.CSafeLoader) of the same bytes; gc-off: with "
            "the garbage collector paused.",
            "x floor: load time / floor time (below 1: faster than plain yaml.load). cached: a "
            "second load by the same loader, no file changed.",
            "runs: timed runs of floor / floor gc-off / load / cached (fewer when a run is long).",
        ],
    )
    for routes, files in sizes:
        case = Case(routes, files)
        if options.selected(case.name):
            progress(f"{case.name} ...")
            report.rows.append(_run_case(case, options))
    return report


def _run_case(case: Case, options: Options) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp:
        write_config(Path(tmp), case.routes, case.files)
        sources = load_sources([Path(tmp)])
    size = sum(len(data) for _, data in sources)
    largest = max(len(data) for _, data in sources)
    if largest > MAX_BYTES:
        # One file would be over the 5 MiB limit: the loader refuses it, there is nothing to time.
        return [case.name, f"{size / 1e6:.1f}", *(["over 5 MiB"] + ["-"] * (len(HEADERS) - 3))]

    def floor() -> list[object]:
        return [yaml.load(data, Loader=yaml.CSafeLoader) for _, data in sources]

    def load() -> DesiredState:
        state = ConfigLoader().load(sources)
        if len(state.routes) != case.routes:  # a sanity check, not a timing assertion
            raise AssertionError(f"{case.name}: loaded {len(state.routes)} routes")
        return state

    floor_gc = measure(floor, options)
    floor_paused = measure(floor, options, pause_gc=True)
    fresh = measure(load, options, pause_gc=True)  # as every caller of the loader does
    cached = _cached(sources, options)
    return [
        case.name,
        f"{size / 1e6:.1f}",
        seconds(floor_gc.median),
        seconds(floor_paused.median),
        seconds(fresh.median),
        rate(case.routes, fresh.median),
        f"{size / 1e6 / fresh.median:.1f}",
        f"{fresh.median / floor_gc.median:.2f}",
        f"{fresh.median / floor_paused.median:.2f}",
        f"{cached.ms:.1f}",
        "/".join(str(t.runs) for t in (floor_gc, floor_paused, fresh, cached)),
    ]


def _cached(sources: list[tuple[str, bytes]], options: Options) -> Timing:
    loader = ConfigLoader()
    loader.load(sources)
    parsed = loader.parsed_files
    timing = measure(lambda: loader.load(sources), options, pause_gc=True)
    if loader.parsed_files != parsed:
        raise AssertionError("the cached run parsed a file again")
    return timing
