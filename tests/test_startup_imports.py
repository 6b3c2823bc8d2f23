"""`--help`, `--version` and `validate` load only what they use: no database, HTTP or daemon stack.

Each runs in a fresh interpreter, as a pre-commit hook or a CI step runs it, and then lists the
heavy packages it imported. Their start-up is measured in `bench/bench_startup.py`.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.cli_checks import python_probe
from tests.conftest import ROOT, run_reconciler

HEAVY = ("sqlalchemy", "alembic", "fastapi", "starlette", "uvicorn", "httpx", "httpcore",
         "watchfiles", "prometheus_client", "jsonschema", "psycopg")  # fmt: skip

PROBE = """
import json, sys
from reconciler.cli import main
code = main(sys.argv[1:])
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.stdin.read())))
print("\\n" + json.dumps({"code": code, "heavy": heavy}))
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["--show-completion", "bash"],
        ["validate", str(ROOT / "config")],
        ["schema"],
    ],
    ids=["help", "version", "completion", "validate", "schema"],
)
def test_a_command_without_a_database_imports_no_heavy_stack(args: list[str]) -> None:
    # `--show-completion SHELL` takes its value only with typer's shell detection off; on, it is
    # a flag that asks shellingham, whose answer depends on the processes above this one.
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    done, result = python_probe(PROBE, *args, input=json.dumps(HEAVY), env=env)
    assert result["code"] == 0, done.stderr
    assert result["heavy"] == [], f"`reconciler {' '.join(args)}` imported {result['heavy']}"


LIGHT_PROBE = """
import json, sys
from reconciler.cli import main
code = main(sys.argv[1:])
print("\\n" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""
# What a config check does not use: terminal rendering, the other commands, the plan, readiness and
# scoring models, and a settings framework.
NOT_FOR_A_CHECK = ("rich", "reconciler.cli.state_cmds", "reconciler.cli.queue_cmds",
                   "reconciler.cli.run_cmd", "reconciler.core.plan_model",
                   "reconciler.core.readiness", "reconciler.core.scoring",
                   "pydantic_settings")  # fmt: skip


def _modules_loaded(args: list[str]) -> tuple[int, set[str], str]:
    """`reconciler ARGS` in a fresh interpreter: its exit code, the modules it loaded, stderr."""
    done, result = python_probe(LIGHT_PROBE, *args)
    return result["code"], set(result["modules"]), done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["validate", str(ROOT / "config")],
        ["validate", str(ROOT / "tests" / "fixtures")],
        ["schema"],
    ],
    ids=["valid", "invalid", "schema"],
)
def test_checking_config_loads_neither_rich_nor_other_commands(args: list[str]) -> None:
    code, loaded, stderr = _modules_loaded(args)
    assert code in (0, 1), stderr
    assert "reconciler.cli.config_cmds" in loaded
    assert not loaded & set(NOT_FOR_A_CHECK), sorted(loaded & set(NOT_FOR_A_CHECK))


# What a valid config of built-in types does not need either: the drivers' data classes, and the
# wording and suggestions of problems.
NOT_FOR_A_VALID_CHECK = (
    "reconciler.adapters.providers.driver",
    "reconciler.core.wording",
    "reconciler.core.suggest",
)


def test_a_valid_config_loads_neither_drivers_nor_the_wording_of_problems() -> None:
    code, loaded, stderr = _modules_loaded(["validate", str(ROOT / "config")])
    assert code == 0, stderr
    assert not loaded & set(NOT_FOR_A_VALID_CHECK), sorted(loaded & set(NOT_FOR_A_VALID_CHECK))


def test_every_command_is_registered_by_the_module_the_command_line_loads_for_it() -> None:
    import typer

    from reconciler.cli import COMMAND_MODULES, command_line

    group = typer.main.get_command(command_line())
    assert isinstance(group, typer.core.TyperGroup)
    assert set(group.commands) == set(COMMAND_MODULES)
    for name, command in group.commands.items():
        callback = command.callback
        if isinstance(command, typer.core.TyperGroup):  # `db`, `jobs`: their subcommands' module
            callback = next(iter(command.commands.values())).callback
        assert callback is not None
        module = callback.__module__
        if module == "typer.main":  # typer wraps callbacks; the original keeps its module
            module = callback.__wrapped__.__module__  # type: ignore[attr-defined]
        assert module == f"reconciler.cli.{COMMAND_MODULES[name]}", name


@pytest.mark.parametrize("command", ["plan", "jobs retry", "db current", "status", "try"])
def test_a_command_is_found_when_only_its_own_module_is_loaded(command: str) -> None:
    """Without `--help` only the named module loads; the command still parses its options."""
    done = run_reconciler(*command.split(), "--no-such-option", cwd=ROOT)
    assert done.code == 1
    assert "No such option: --no-such-option" in done.stderr, done.stderr
    assert "No such command" not in done.stderr
