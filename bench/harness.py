"""Timing and reporting shared by the benchmark modules: medians of a few runs, plain tables."""

from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version

import yaml

from reconciler.adapters.files import paused_gc as gc_paused

# For a process a benchmark starts: compiled bytecode is written and used, as after
# `pip install`, even where PYTHONDONTWRITEBYTECODE is set (it would compile every import anew).
BYTECODE_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


@dataclass(frozen=True)
class Options:
    """What the command line asked for."""

    quick: bool = False
    filters: tuple[str, ...] = ()
    repeats: int = 3
    budget_s: float = 12.0  # stop repeating a measurement once it has taken this long

    def selected(self, case: str) -> bool:
        """True when `case` (a full name such as `load/10000x10`) should run."""
        return not self.filters or any(f in case for f in self.filters)


@dataclass(frozen=True)
class Timing:
    """The median of `runs` wall-clock measurements, in seconds."""

    median: float
    runs: int

    @property
    def ms(self) -> float:
        return self.median * 1000


@dataclass
class Report:
    """One benchmark's result: a table and notes printed under it."""

    title: str
    headers: Sequence[str]
    rows: list[Sequence[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
        lines = [self.title, ""]
        lines.append(_line(self.headers, widths))
        lines.append("  ".join("-" * w for w in widths))
        lines += [_line(row, widths) for row in self.rows]
        if self.notes:
            lines.append("")
            lines += self.notes
        return "\n".join(lines) + "\n"


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    # First column left-aligned (the case), numbers right-aligned.
    parts = [cells[0].ljust(widths[0])]
    parts += [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
    return "  ".join(parts).rstrip()


def measure(
    run: Callable[[], object],
    options: Options,
    *,
    setup: Callable[[], None] | None = None,
    pause_gc: bool = False,
) -> Timing:
    """Time `run` up to `options.repeats` times (at least once, fewer when over budget).

    Before each run the previous result is dropped and the collector runs, so every run starts
    from the same heap; `setup` runs then, untimed.
    """
    samples: list[float] = []
    spent = 0.0
    while len(samples) < options.repeats and (not samples or spent < options.budget_s):
        gc.collect()
        if setup is not None:
            setup()
        if pause_gc:
            with gc_paused():
                start = time.perf_counter()
                result = run()
                elapsed = time.perf_counter() - start
        else:
            start = time.perf_counter()
            result = run()
            elapsed = time.perf_counter() - start
        del result
        samples.append(elapsed)
        spent += elapsed
    return Timing(statistics.median(samples), len(samples))


def progress(message: str) -> None:
    """A line on stderr, so a long run shows where it is without mixing into the tables."""
    print(message, file=sys.stderr, flush=True)


def environment() -> str:
    """One line saying what was measured on."""
    libyaml = "with libyaml" if getattr(yaml, "__with_libyaml__", False) else "WITHOUT libyaml"
    return (
        f"Python {platform.python_version()} on {platform.machine()} "
        f"({_cpus()} CPUs), PyYAML {yaml.__version__} {libyaml}, "
        f"pydantic {version('pydantic')}, gc thresholds {gc.get_threshold()}"
    )


def _cpus() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return str(usable)


def rate(count: float, seconds: float) -> str:
    """`count / seconds` in a short human form: 1.2M, 45.3k, 812."""
    if seconds <= 0:
        return "-"
    value = count / seconds
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.0f}"


def seconds(value: float) -> str:
    """A duration with three significant figures: 0.0123, 1.23, 12.3."""
    return f"{value:.3g}"
