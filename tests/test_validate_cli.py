"""`reconciler validate` as a user runs it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.conftest import ROOT, Result, run_reconciler


def test_the_example_config_is_valid(cli: Callable[..., Result]) -> None:
    result = cli("validate", ROOT / "config")
    assert result.code == 0, result.output
    assert "valid: 2 provider(s), 3 route(s) in 2 file(s)" in result.stdout


def test_validate_runs_as_a_separate_process_from_the_config_dir_setting(tmp_path: Path) -> None:
    result = run_reconciler("validate", env={"RECONCILER_CONFIG_DIR": str(ROOT / "config")})
    assert result.code == 0, result.output
    assert result.stderr == ""


def test_a_usage_error_exits_1_not_2(cli: Callable[..., Result]) -> None:
    result = cli("validate", "--no-such-flag")
    assert result.code == 1
    assert "No such option: --no-such-flag" in result.stderr
