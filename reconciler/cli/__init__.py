"""The command line. The only layer that prints; every command returns an exit code.

Exit codes: 0 success, 1 error (bad input, refused action, usage), 2 changes present (with
`--detailed-exitcode`), 3 a required task is not ready (`status`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

# Commands register themselves on `app` when imported.
from reconciler.cli import (  # noqa: F401
    config_cmds,
    db_cmds,
    queue_cmds,
    results_cmds,
    run_cmd,
    state_cmds,
    status_cmds,
)
from reconciler.cli.app import app
from reconciler.cli.console import err
from reconciler.errors import ReconcilerError

__all__ = ["app", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code instead of raising SystemExit."""
    args = list(sys.argv[1:] if argv is None else argv)
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
