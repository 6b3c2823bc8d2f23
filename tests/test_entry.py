"""The process entry (`python -m reconciler`; the installed script, which `test_wheel_install`
runs) and the cyclic collector.

Start-up loads with the collector off and freezes what it loaded; the command runs with the
collector on; at exit what the command built is frozen, so the final collection walks none of it.
"""

from __future__ import annotations

from pathlib import Path

from tests.cli_checks import python_probe
from tests.conftest import ROOT

# Runs the entry as the script does, recording the collector's state when the command starts
# (the config check is wrapped) and when the process exits.
PROBE = """
import atexit, gc, json, sys
seen = {}
atexit.register(lambda: print("\\n" + json.dumps(
    {**seen, "exit_enabled": gc.isenabled(), "exit_frozen": gc.get_freeze_count()})))
import reconciler.service.config as config
check = config.check
def watched(*args):
    seen.update(command_enabled=gc.isenabled(), command_frozen=gc.get_freeze_count())
    return check(*args)
config.check = watched
from reconciler.__main__ import main
main()
"""


def _entry(*args: str) -> tuple[int, dict[str, object], str]:
    done, seen = python_probe(PROBE, *args)
    return done.returncode, seen, done.stderr


def test_a_command_runs_with_the_collector_on_and_its_start_up_frozen() -> None:
    code, seen, stderr = _entry("validate", str(ROOT / "config"))
    assert code == 0, stderr
    assert seen["command_enabled"] is True
    # typer, the command line and the command's module: thousands of objects, never walked again
    assert isinstance(seen["command_frozen"], int) and seen["command_frozen"] > 10_000


def test_at_exit_what_the_command_built_is_frozen_too() -> None:
    code, seen, stderr = _entry("validate", str(ROOT / "config"))
    assert code == 0, stderr
    assert seen["exit_enabled"] is True
    assert isinstance(seen["exit_frozen"], int)
    assert isinstance(seen["command_frozen"], int)
    assert seen["exit_frozen"] > seen["command_frozen"]  # the models and schemas built since


def test_the_entry_exits_with_the_commands_code(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("version: 1\nproviders: [\n", encoding="utf-8")
    code, seen, stderr = _entry("validate", str(tmp_path))
    assert code == 1
    assert "bad.yaml:" in stderr
    assert seen["exit_enabled"] is True
