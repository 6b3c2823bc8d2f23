"""The direction of imports, read from the source with `ast` (static imports, those inside
functions included), so that the layers hold without anyone having to remember them:

    reconciler.cli, reconciler.daemon        entry points
        -> reconciler.service.*               use cases: reconcile, readiness, scoring, ask,
                                              queue, results...
        -> reconciler.adapters.*              I/O: files, database, providers, watcher
        -> reconciler.core.*                  pure

A layer may import any layer below it. `reconciler.errors`, `settings`, `logs`, `render` and the
package itself are shared leaf modules anyone may import. And the tests: no test module imports
another one; what they share lives in helper modules (`tests/builders.py`, `tests/conftest.py`...).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "reconciler"
TESTS = ROOT / "tests"

LEAVES = frozenset(
    {
        "reconciler",
        "reconciler.errors",
        "reconciler.settings",
        "reconciler.logs",
        "reconciler.render",
        "reconciler.problem_report",
    }
)
USE_CASES = frozenset({"reconciler.service"})  # and every module under it
# What core must not import: the network, processes, threads and event loops, the collector,
# process state (`os`: environ, getpid...), the database and HTTP stacks, the file watcher, and
# module-level randomness (a random source is a parameter, supplied by the caller).
CORE_FORBIDDEN = frozenset(
    {
        "socket",
        "subprocess",
        "os",
        "gc",
        "threading",
        "multiprocessing",
        "asyncio",
        "signal",
        "random",
        "sqlalchemy",
        "alembic",
        "psycopg",
        "httpx",
        "httpcore",
        "fastapi",
        "starlette",
        "uvicorn",
        "watchfiles",
    }
)

# `reconciler run` starts the daemon: it builds `Daemon(DaemonOptions(...))` and parses the
# `--allow-host` option with the daemon's own parser, so that both read the same rule.
CLI_STARTS_DAEMON: dict[str, frozenset[str]] = {
    "reconciler/cli/run_cmd.py": frozenset({"reconciler.daemon.app", "reconciler.daemon.web"}),
}


@dataclass(frozen=True)
class Import:
    file: str  # relative to the repository, e.g. reconciler/core/config.py
    line: int
    module: str  # the module imported, e.g. reconciler.adapters.db.store or gc

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: imports {self.module}"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    """True when `name` (reconciler.x.y) is a module or package of this source tree."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path) -> Iterator[Import]:
    """Every module `path` imports; `from a import b` is `a.b` when b is a module of ours."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    file = path.relative_to(ROOT).as_posix()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=file)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(file, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                yield Import(file, node.lineno, full if is_module(full) else source)


def modules(under: str) -> list[Path]:
    return sorted((ROOT / under).rglob("*.py"))


def within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def layer_imports(under: str) -> list[Import]:
    return [i for path in modules(under) for i in imports_of(path)]


def report(what: str, broken: list[Import]) -> str:
    return f"{what}:\n" + "\n".join(f"  {i}" for i in dict.fromkeys(broken))


def test_core_imports_only_core_and_the_shared_leaf_modules() -> None:
    broken = [
        i
        for i in layer_imports("reconciler/core")
        if within(i.module, "reconciler")
        and not within(i.module, "reconciler.core")
        and i.module not in LEAVES
    ]
    assert not broken, report("reconciler.core imports outside core (core is pure)", broken)


def test_core_imports_no_io_module() -> None:
    broken = [
        i for i in layer_imports("reconciler/core") if i.module.split(".")[0] in CORE_FORBIDDEN
    ]
    assert not broken, report(
        "reconciler.core imports an I/O module (take it as a parameter from the caller)", broken
    )


def test_adapters_never_import_use_cases_cli_or_daemon() -> None:
    upward = ("reconciler.cli", "reconciler.daemon", *USE_CASES)
    broken = [
        i
        for under in ("reconciler/adapters", "reconciler/migrations")
        for i in layer_imports(under)
        if within(i.module, *upward)
    ]
    assert not broken, report("an adapter imports a use case, the CLI or the daemon", broken)


def test_use_cases_never_import_cli_or_daemon() -> None:
    paths = [p for p in modules("reconciler") if within(module_name(p), *USE_CASES)]
    broken = [
        i
        for path in paths
        for i in imports_of(path)
        if within(i.module, "reconciler.cli", "reconciler.daemon")
    ]
    assert not broken, report("a use case imports the CLI or the daemon", broken)


def test_the_cli_imports_the_daemon_only_to_start_it() -> None:
    broken = [
        i
        for i in [*layer_imports("reconciler/cli"), *imports_of(PACKAGE / "__main__.py")]
        if within(i.module, "reconciler.daemon")
        and i.module not in CLI_STARTS_DAEMON.get(i.file, frozenset())
    ]
    assert not broken, report("the CLI imports the daemon's internals", broken)


def test_cli_and_daemon_never_import_an_adapter() -> None:
    broken = [
        i
        for under in ("reconciler/cli", "reconciler/daemon")
        for i in layer_imports(under)
        if within(i.module, "reconciler.adapters")
    ]
    assert not broken, report(
        "a command or the daemon imports an adapter directly (call a use case instead)", broken
    )


def test_no_test_module_imports_another_test_module() -> None:
    broken = [
        i
        for path in sorted(TESTS.glob("*.py"))
        for i in imports_of(path)
        if within(i.module, "tests") and i.module.rpartition(".")[2].startswith("test_")
    ]
    assert not broken, report(
        "a test module imports from another one (move what they share to a helper module "
        "such as tests/builders.py or tests/conftest.py)",
        broken,
    )
