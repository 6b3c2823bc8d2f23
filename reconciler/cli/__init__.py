"""The command line. The only layer that prints; every command returns an exit code.

Exit codes: 0 success, 1 error (bad input, refused action, usage), 2 changes present (with
`--detailed-exitcode`), 3 a required task is not ready (`status`).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

import typer

from reconciler.cli.app import app
from reconciler.cli.console import err
from reconciler.errors import ReconcilerError

__all__ = ["COMMAND_MODULES", "command_line", "main", "run"]

# Each top-level command -> the module that registers it on `app` when imported, in the order
# `--help` lists them. typer reads the signature of every registered command at each start, so a
# command line loads only the modules it names (about 40 ms less for `validate`).
COMMAND_MODULES = {
    "validate": "config_cmds",
    "schema": "config_cmds",
    "db": "db_cmds",
    "enqueue": "queue_cmds",
    "jobs": "queue_cmds",
    "score": "queue_cmds",
    "results": "results_cmds",
    "try": "results_cmds",
    "run": "run_cmd",
    "plan": "state_cmds",
    "apply": "state_cmds",
    "show": "state_cmds",
    "export": "state_cmds",
    "history": "state_cmds",
    "status": "status_cmds",
}
_HELP = frozenset({"-h", "--help"})


def command_line(args: Sequence[str] | None = None) -> typer.Typer:
    """The application with the commands `args` may run registered; all of them for None.

    Every word that names a command loads that command's module (a directory called `plan`
    given to `--config` loads one module too many, never one too few). Help, shell completion,
    or no command name at all load every module, so that lists are whole.
    """
    named = {COMMAND_MODULES[a] for a in args or () if a in COMMAND_MODULES}
    completing = any(name.startswith("_RECONCILER_COMPLETE") for name in os.environ)
    whole = args is None or not named or completing or not _HELP.isdisjoint(args)
    for module in dict.fromkeys(COMMAND_MODULES.values()):
        if whole or module in named:
            importlib.import_module(f"reconciler.cli.{module}")
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code instead of raising SystemExit."""
    args = list(sys.argv[1:] if argv is None else argv)
    command_line(args)
    return run(args)


def run(args: list[str]) -> int:
    """Run `args` on the application `command_line(args)` returned; the exit code."""
    try:
        result = app(args=args, prog_name="reconciler", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:  # typer's completion options exit directly
        return exc.code if isinstance(exc.code, int) else 0
    except typer.Abort:
        err.print("aborted")
        return 1
    except typer.TyperException as exc:
        # Usage errors exit 1, not click's 2: CI reads 2 as "changes present".
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            err.print(f"Error: {exc.format_message()}")
        return 1
    except ReconcilerError as exc:
        err.print(f"error: {exc}")
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
