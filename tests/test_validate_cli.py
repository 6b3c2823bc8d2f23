"""`reconciler validate` as a user runs it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

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


PROVIDERS = """\
version: 1
providers:
  local-ollama:
    type: ollama
    endpoint:
      base_url: http://127.0.0.1:11434
  openrouter:
    type: openai_compatible
    endpoint:
      base_url: https://openrouter.ai/api/v1
      api_key: {env: RECONCILER_TEST_OPENROUTER_KEY}
      headers: {X-Title: {env: RECONCILER_TEST_TITLE}}
"""
ROUTES = """\
version: 1
routes:
  scoring:
    provider: local-ollama
    model: llama3.1:8b
    fallbacks:
      - {provider: openrouter, model: meta-llama/llama-3.1-8b-instruct}
"""


def _errors(result: Result) -> list[tuple[str, int, int, str]]:
    return [
        (Path(e["file"]).name, e["line"], e["column"], e["code"])
        for e in json.loads(result.stdout)["errors"]
    ]


def test_a_valid_directory_reports_its_counts_in_json(
    cli: Callable[..., Result], write_config: Callable[..., Path]
) -> None:
    config = write_config({"providers.yaml": PROVIDERS, "routes.yml": ROUTES})

    result = cli("validate", config, "--format", "json")

    assert result.code == 0, result.output
    assert json.loads(result.stdout) == {"version": 1, "valid": True, "files": 2, "errors": []}


def test_files_and_directories_can_be_given_together_and_each_file_is_read_once(
    cli: Callable[..., Result], write_config: Callable[..., Path]
) -> None:
    config = write_config({"providers.yaml": PROVIDERS, "routes/main.yaml": ROUTES})

    result = cli("validate", config / "providers.yaml", config / "routes", config)

    assert result.code == 0, result.output
    assert "valid: 2 provider(s), 1 route(s) in 2 file(s)" in result.stdout


def test_a_single_file_is_checked_on_its_own(
    cli: Callable[..., Result], write_config: Callable[..., Path]
) -> None:
    config = write_config({"providers.yaml": PROVIDERS, "routes.yaml": ROUTES})

    result = cli("validate", config / "routes.yaml", "--format", "json")

    assert result.code == 1
    assert _errors(result) == [
        ("routes.yaml", 4, 15, "unknown_provider"),
        ("routes.yaml", 7, 20, "unknown_provider"),
    ]


def test_dotfiles_editor_leftovers_and_other_files_are_skipped(
    cli: Callable[..., Result], write_config: Callable[..., Path]
) -> None:
    broken = "version: [\n"
    config = write_config(
        {
            "providers.yaml": PROVIDERS,
            "routes.yaml": ROUTES,
            ".hidden.yaml": broken,
            ".git/config.yaml": broken,
            "routes.yaml~": broken,
            ".#routes.yaml": broken,
            "routes.yaml.swp": broken,
            "routes.yaml.tmp": broken,
            "notes.txt": broken,
        }
    )

    result = cli("validate", config)

    assert result.code == 0, result.output
    assert "in 2 file(s)" in result.stdout


def test_check_env_fails_on_an_unset_variable_at_the_reference(
    cli: Callable[..., Result], write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config({"providers.yaml": PROVIDERS, "routes.yaml": ROUTES})
    monkeypatch.delenv("RECONCILER_TEST_OPENROUTER_KEY", raising=False)
    monkeypatch.setenv("RECONCILER_TEST_TITLE", "news")

    assert cli("validate", config).code == 0
    result = cli("validate", config, "--check-env", "--format", "json")

    assert result.code == 1
    [error] = json.loads(result.stdout)["errors"]
    assert (Path(error["file"]).name, error["line"], error["column"]) == ("providers.yaml", 11, 22)
    assert error["code"] == "secret_missing"
    assert error["path"] == "providers.openrouter.endpoint.api_key.env"
    assert "environment variable RECONCILER_TEST_OPENROUTER_KEY is not set" in error["message"]


def test_check_env_reports_every_unset_variable(
    cli: Callable[..., Result], write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config({"providers.yaml": PROVIDERS, "routes.yaml": ROUTES})
    monkeypatch.delenv("RECONCILER_TEST_OPENROUTER_KEY", raising=False)
    monkeypatch.delenv("RECONCILER_TEST_TITLE", raising=False)

    result = cli("validate", config, "--check-env", "--format", "json")

    assert result.code == 1
    assert _errors(result) == [
        ("providers.yaml", 11, 22, "secret_missing"),
        ("providers.yaml", 12, 32, "secret_missing"),
    ]


def test_check_env_passes_when_every_variable_is_set_and_never_prints_its_value(
    cli: Callable[..., Result], write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config({"providers.yaml": PROVIDERS, "routes.yaml": ROUTES})
    monkeypatch.setenv("RECONCILER_TEST_OPENROUTER_KEY", "sk-or-v1-from-the-environment")
    monkeypatch.setenv("RECONCILER_TEST_TITLE", "news")

    result = cli("validate", config, "--check-env")

    assert result.code == 0, result.output
    assert "sk-or-v1-from-the-environment" not in result.output


def test_every_problem_of_every_file_is_reported_in_one_run(
    cli: Callable[..., Result], write_config: Callable[..., Path]
) -> None:
    config = write_config(
        {
            "a.yaml": PROVIDERS.replace("type: ollama", "type: olama"),
            "b.yaml": "version: 1\nroutes:\n  extraction:\n    provider: local-ollama\n"
            "    model: qwen2.5:7b\n    requried: true\n",
            "c.yaml": "version: [\n",
            "d.yaml": ROUTES.replace("fallbacks:", "fallback:"),
        }
    )

    result = cli("validate", config, "--format", "json")

    assert result.code == 1
    assert _errors(result) == [
        ("a.yaml", 4, 11, "unknown_type"),
        ("b.yaml", 6, 5, "unknown_field"),
        ("c.yaml", 2, 1, "yaml_syntax"),
        ("d.yaml", 6, 5, "unknown_field"),
    ]
    assert json.loads(result.stdout)["files"] == 4


def test_a_missing_path_on_the_command_line_is_an_error_that_names_it(
    cli: Callable[..., Result], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = write_config({"providers.yaml": PROVIDERS, "routes.yaml": ROUTES})
    missing = tmp_path / "no-such-dir"

    result = cli("validate", config, missing)

    assert result.code == 1
    assert f"{missing}: {missing} does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_directory_without_config_files_is_an_error(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    (tmp_path / "README.md").write_text("nothing here\n", encoding="utf-8")

    result = cli("validate", tmp_path, "--format", "json")

    assert result.code == 1
    [error] = json.loads(result.stdout)["errors"]
    assert error["code"] == "no_files"
