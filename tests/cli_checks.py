"""The command line run in this process on a test database, and the shape its refusals must have.

`database_cli` is what the `rc` fixture (conftest.py) returns; `assert_one_line_error` checks a
refusal; `ESC` and `DEEP` are what hostile inputs are made of; `python_probe` runs a script in
a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from tests.conftest import ROOT, Result
from tests.db_inspect import url_of

Run = Callable[..., Result]

ESC = "\x1b"
DEEP = 100_000  # nesting far past any depth limit


def database_cli(cli: Run, engine: Engine) -> Run:
    """`reconciler --database-url URL [--config DIR] ARGS` in this process, `cli` being the
    `cli` fixture and URL `engine`'s database."""

    def run(config: Path | None, *args: str | Path) -> Result:
        given: list[str | Path] = ["--database-url", url_of(engine)]
        if config is not None:
            given += ["--config", config]
        return cli(*given, *args)

    return run


def assert_one_line_error(result: Result, *words: str) -> None:
    """Exit 1 with a single `error:` line holding `words`; no traceback, no raw escape."""
    assert result.code == 1, result.output
    assert "Traceback" not in result.output
    assert ESC not in result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)


def python_probe(
    script: str, *args: str, **options: Any
) -> tuple[subprocess.CompletedProcess[str], Any]:
    """`python -c SCRIPT ARGS` in a fresh interpreter from the checkout: the finished process and
    the JSON on the last line of its output."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        **options,
    )
    try:
        return done, json.loads(done.stdout.strip().rsplit("\n", 1)[-1])
    except ValueError:
        raise AssertionError(f"no JSON on the probe's last line; stderr:\n{done.stderr}") from None
