"""`validate` and `schema`: the commands that need no database.

No `from __future__ import annotations`: typer reads the signatures at every start (see `app`).
"""

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from reconciler.cli.app import app, settings_of
from reconciler.cli.console import err, out


class ProblemFormat(StrEnum):
    text = "text"
    json = "json"
    github = "github"


@app.command()
def validate(
    ctx: typer.Context,
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Files or directories; default: the config directory."),
    ] = None,
    output: Annotated[ProblemFormat, typer.Option("--format", help="Output format.")] = (
        ProblemFormat.text
    ),
    check_env: Annotated[
        bool, typer.Option("--check-env", help="Also require every referenced env var to be set.")
    ] = False,
) -> int:
    """Check the config files; no database needed. Exit 0 when valid, 1 when not."""
    from reconciler.problem_report import problems_github, problems_json, problems_text
    from reconciler.service import config

    checked = config.check(paths or [settings_of(ctx).config_dir], check_env)
    files, state, problems = checked.files, checked.state, checked.problems
    if output is ProblemFormat.json:
        sys.stdout.write(problems_json(problems, files) + "\n")
    elif output is ProblemFormat.github:
        if problems:
            sys.stdout.write(problems_github(problems) + "\n")
    elif problems:
        err.print(problems_text(problems))
        err.print(f"{len(problems)} problem(s) found in {files} file(s).")
    elif state is not None:
        out.print(
            f"valid: {len(state.providers)} provider(s), {len(state.routes)} route(s) "
            f"in {files} file(s)"
        )
    return 1 if problems else 0


@app.command()
def schema(
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write to this file instead of stdout.")
    ] = None,
) -> int:
    """Print the JSON Schema of the config files (for editors and CI)."""
    from reconciler.service import config

    text = config.schema()
    if out_file is None:
        sys.stdout.write(text)
        return 0
    try:
        out_file.write_text(text, encoding="utf-8")
    except OSError as exc:
        err.print(f"error: cannot write {out_file}: {exc.strerror}")
        return 1
    out.print(f"wrote {out_file}")
    return 0
