"""Start-up of the command line, timed from outside the process, against the import floor.

A pre-commit hook or a CI step pays the start-up of every `reconciler` command it runs. Per case
(`startup/COMMAND`), the median wall-clock time of a fresh process:
- floor: `python -c "import pydantic, yaml, typer"`, the libraries every command needs;
- command: `python -m reconciler ARGS` as a user runs it (`--help`, `--version`, `validate` of
  the example config, `schema`).

`x floor` is the command's time / the floor's. `import pydantic` is lazy, so the floor builds no
model and parses no option; `startup/reference` is the least a command built on these libraries
pays: one typer command that parses three options and builds one pydantic model after looking up
one entry-point group. The database, HTTP and daemon stacks load only in
the commands that use them.

Both run with compiled bytecode in place, as after `pip install` (a first, untimed run of each
writes it even where PYTHONDONTWRITEBYTECODE is set), and they alternate run by run, so that a
change in the machine's load touches both alike.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import BYTECODE_ENV, Options, Report, progress

NAME = "startup"
ROOT = Path(__file__).resolve().parent.parent
FLOOR = ["-c", "import pydantic, yaml, typer"]
REFERENCE = """
import importlib.metadata
import pydantic, yaml, typer
from pydantic import BaseModel

class Spec(BaseModel):
    count: int = 0

app = typer.Typer()

@app.command()
def check(paths: list[str], count: int = 0, strict: bool = False) -> None:
    list(importlib.metadata.entry_points(group="reconciler.providers"))
    print(Spec(count=count), yaml.safe_load("a: 1"))

app(["config"], standalone_mode=False)
"""
COMMANDS = {
    "help": ["--help"],
    "version": ["--version"],
    "validate": ["validate", str(ROOT / "config")],
    "schema": ["schema"],
}
HEADERS = ("case", "floor", "command", "x floor", "runs")


def _process(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, *args], check=True, capture_output=True, cwd=ROOT, env=BYTECODE_ENV
    )
    return time.perf_counter() - start


def _paired(floor: list[str], command: list[str], runs: int) -> tuple[float, float]:
    """Median seconds of the floor and of the command, run alternately after a warm-up each."""
    _process(floor), _process(command)
    floors, commands = [], []
    for _ in range(runs):
        floors.append(_process(floor))
        commands.append(_process(command))
    return statistics.median(floors), statistics.median(commands)


def run(options: Options) -> Report:
    report = Report(
        title="CLI start-up, fresh process each run (medians)",
        headers=HEADERS,
        notes=[
            'floor: python -c "import pydantic, yaml, typer"; command: python -m reconciler ARGS.',
            "reference: a typer command that builds one pydantic model (see bench_startup.py).",
            "x floor: command time / floor time, both measured in this run.",
        ],
    )
    runs = 5 if options.quick else max(options.repeats, 11)
    cases = {"reference": ["-c", REFERENCE]}
    cases |= {case: ["-m", "reconciler", *args] for case, args in COMMANDS.items()}
    for case, args in cases.items():
        name = f"{NAME}/{case}"
        if not options.selected(name):
            continue
        progress(f"{name} ...")
        floor, command = _paired(FLOOR, args, runs)
        report.rows.append(
            (
                name,
                f"{floor * 1000:.0f} ms",
                f"{command * 1000:.0f} ms",
                f"{command / floor:.2f}x",
                str(runs),
            )
        )
    return report
