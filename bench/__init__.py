"""Benchmarks of reconciler against floors measured in the same run (DESIGN section 8).

    python -m bench                  # every benchmark (a few minutes on 2 cores)
    python -m bench --quick          # small sizes, a few seconds
    python -m bench load/10000       # only the cases whose name contains a filter

Each `bench_*.py` module in this package is one benchmark: it exposes `NAME`, a one-line
`TITLE` and `run(options) -> Report`. The harness in `bench.harness` times, takes medians and
prints tables. Nothing here asserts on time; the tests only check that the code runs.
"""
