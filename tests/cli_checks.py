"""The command line run in this process on a test database, and the shape its refusals must have.

`database_cli` is what the `rc` fixture (conftest.py) returns; `assert_one_line_error` checks a
refusal; `ESC` and `DEEP` are what hostile inputs are made of.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from tests.conftest import Result
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
