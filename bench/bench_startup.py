"""Start-up of the command line, timed from outside the process, against the import floor.

A pre-commit hook or a CI step pays the start-up of every `reconciler` command it runs. Per case
(`startup/COMMAND`), the median wall-clock time of a fresh process:
- floor: `python -c "import pydantic, yaml, typer"`, the libraries every command needs;
- command: `python -m reconciler ARGS` as a user runs it (`--help`, `--version`, `validate` of
  the example config, `schema`).

`x floor` is the command's time / the floor's. The database, HTTP and daemon stacks load only in
the commands that use them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.harness import Options, Report, measure, progress

NAME = "startup"
ROOT = Path(__file__).resolve().parent.parent
FLOOR = ["-c", "import pydantic, yaml, typer"]
COMMANDS = {
    "help": ["--help"],
    "version": ["--version"],
    "validate": ["validate", str(ROOT / "config")],
    "schema": ["schema"],
}
HEADERS = ("case", "floor", "command", "x floor", "runs")


def _process(args: list[str]) -> None:
    subprocess.run([sys.executable, *args], check=True, capture_output=True, cwd=ROOT)


def run(options: Options) -> Report:
    report = Report(
        title="CLI start-up, fresh process each run (medians)",
        headers=HEADERS,
        notes=[
            'floor: python -c "import pydantic, yaml, typer"; command: python -m reconciler ARGS.',
            "x floor: command time / floor time, both measured in this run.",
        ],
    )
    repeats = Options(options.quick, options.filters, max(options.repeats, 5), options.budget_s)
    floor = None
    for case, args in COMMANDS.items():
        name = f"{NAME}/{case}"
        if not options.selected(name):
            continue
        progress(f"{name} ...")
        floor = floor or measure(lambda: _process(FLOOR), repeats)
        timed = measure(lambda args=args: _process(["-m", "reconciler", *args]), repeats)
        report.rows.append(
            (
                name,
                f"{floor.ms:.0f} ms",
                f"{timed.ms:.0f} ms",
                f"{timed.median / floor.median:.2f}x",
                f"{floor.runs}/{timed.runs}",
            )
        )
    return report
