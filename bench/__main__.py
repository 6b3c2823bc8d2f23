"""`python -m bench [--quick] [--repeats N] [FILTER ...]`: run the benchmarks, print tables.

Every `bench_*` module of this package is a benchmark. A FILTER keeps the cases whose full name
(`load/10000x10`) contains it; `load` keeps every case of the load benchmark.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from collections.abc import Sequence
from types import ModuleType

import bench
from bench.harness import Options, environment


def benchmark_modules() -> list[ModuleType]:
    """Every `bench_*` module in this package, sorted by name."""
    names = sorted(
        info.name for info in pkgutil.iter_modules(bench.__path__) if info.name.startswith("bench_")
    )
    return [importlib.import_module(f"bench.{name}") for name in names]


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("filters", nargs="*", metavar="FILTER", help="run only matching cases")
    parser.add_argument("--quick", action="store_true", help="small sizes; runs in seconds")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return Options(quick=args.quick, filters=tuple(args.filters), repeats=args.repeats)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    print(environment())
    print()
    started = time.perf_counter()
    ran = 0
    for module in benchmark_modules():
        report = module.run(options)
        if report.rows:
            ran += len(report.rows)
            print(report.render())
    if not ran:
        print(f"no benchmark case matches {' '.join(options.filters)!r}", file=sys.stderr)
        return 1
    print(f"{ran} case(s) in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
