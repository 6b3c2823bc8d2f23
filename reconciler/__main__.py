"""`python -m reconciler` and the installed `reconciler` command: one command line, one process.

The cyclic collector is kept off what start-up builds. Modules, classes and validators live as
long as the process, so each collection that walks them frees nothing: with the collector off
while they load, then frozen, `validate` starts about a sixth sooner (see the README). At
exit, what the command built is frozen too, so the interpreter's final full collection walks
none of it; the operating system takes the memory back. A large `apply` saves the most there.
Frozen cyclic garbage is never finalized, so a command closes what it opens (files, databases)
itself, as every command does.
"""

import gc
import sys
from typing import NoReturn


def main() -> NoReturn:
    """Run `reconciler ARGS` and exit with its code."""
    args = sys.argv[1:]
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        from reconciler.cli import command_line, run

        command_line(args)
        gc.freeze()
    finally:
        if was_enabled:
            gc.enable()
    try:
        code = run(args)
    finally:
        gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    main()
