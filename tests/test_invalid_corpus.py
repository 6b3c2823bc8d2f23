"""The corpus of bad config inputs: each case breaks one loading rule and says what to report.

Every directory under `tests/fixtures/invalid/` holds YAML files and an `expected.json` written and
checked by hand: the file, line and column of the offending token, the problem code and a
distinctive part of the message, for every problem of the case.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.yaml_problems import MAX_BYTES
from tests.conftest import FIXTURES, Result

CORPUS = FIXTURES / "invalid"
CASES = sorted(p for p in CORPUS.iterdir() if p.is_dir())
# A literal secret planted in a case file: a word holding "planted".
_PLANTED = re.compile(r"[^\s{}\[\]\"',:@?=]*planted[^\s{}\[\]\"',:@?=]*")
VALID = """\
version: 1
providers:
  local-ollama:
    type: ollama
    endpoint:
      base_url: http://127.0.0.1:11434
routes:
  scoring:
    provider: local-ollama
    model: llama3.1:8b
"""

Place = tuple[str, int, int, str]


def expected(case: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads((case / "expected.json").read_text(encoding="utf-8"))
    return rows


def relative(case: Path, file: str) -> str:
    return Path(file).relative_to(case).as_posix()


def planted_secrets(case: Path) -> set[str]:
    return {
        secret
        for file in case.rglob("*.y*ml")
        for secret in _PLANTED.findall(file.read_bytes().decode("utf-8", errors="replace"))
    }


def test_the_corpus_has_a_case_for_every_rule() -> None:
    assert len(CASES) >= 55
    assert all((case / "expected.json").is_file() for case in CASES)
    assert all(expected(case) for case in CASES), "every case expects at least one problem"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_validate_reports_every_problem_of_the_case_at_its_place(
    cli: Callable[..., Result], case: Path
) -> None:
    result = cli("validate", case, "--format", "json")

    assert result.code == 1, result.output
    assert "Traceback" not in result.stderr
    document = json.loads(result.stdout)
    assert document["valid"] is False
    errors = document["errors"]
    found: set[Place] = {
        (relative(case, e["file"]), e["line"], e["column"], e["code"]) for e in errors
    }
    wanted: set[Place] = {(w["file"], w["line"], w["column"], w["code"]) for w in expected(case)}
    assert found == wanted
    assert len(errors) == len(found), "a problem is reported twice"
    messages = {(relative(case, e["file"]), e["line"], e["column"], e["code"]): e for e in errors}
    for want in expected(case):
        got = messages[(want["file"], want["line"], want["column"], want["code"])]
        assert want["message"] in got["message"]
        assert got["hint"], f"{got['message']!r} says what is wrong but not how to fix it"


@pytest.mark.parametrize("output", ["text", "json", "github"])
def test_no_output_ever_holds_a_planted_secret(cli: Callable[..., Result], output: str) -> None:
    secrets = {case.name: planted_secrets(case) for case in CASES}
    assert len([name for name, found in secrets.items() if found]) >= 8, secrets
    for case in CASES:
        result = cli("validate", case, "--format", output)
        assert result.code == 1
        for secret in secrets[case.name]:
            assert secret not in result.output, f"{case.name} echoes {secret!r}"
        assert "planted" not in result.output, case.name


def test_the_text_format_prints_file_line_column_path_and_message(
    cli: Callable[..., Result],
) -> None:
    case = CORPUS / "unknown-provider-field"
    result = cli("validate", case)

    assert result.code == 1
    assert result.stdout == ""
    file = case / "providers.yaml"
    assert result.stderr.splitlines() == [
        f"{file}:5:5: providers.local-ollama.enabeld: unknown field 'enabeld'",
        "    hint: did you mean 'enabled'?",
        f"{file}:8:5: providers.local-ollama.keepalive: unknown field 'keepalive'",
        "    hint: did you mean 'keep_alive'?",
        "2 problem(s) found in 1 file(s).",
    ]


def test_the_text_format_leaves_out_the_path_of_a_problem_that_has_none(
    cli: Callable[..., Result],
) -> None:
    case = CORPUS / "multiple-documents"
    result = cli("validate", case, "--format", "text")

    assert result.stderr.splitlines()[0] == (
        f"{case / 'providers.yaml'}:7:1: the file holds more than one YAML document "
        "(a second `---`)"
    )


def test_the_github_format_prints_one_error_annotation_per_problem(
    cli: Callable[..., Result],
) -> None:
    case = CORPUS / "errors-in-several-files"
    result = cli("validate", case, "--format", "github")

    assert result.code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    annotation = re.compile(r"::error file=(?P<file>[^,]+),line=(\d+),col=(\d+),title=[^:]+::.+")
    places = []
    for line in lines:
        match = annotation.fullmatch(line)
        assert match, line
        places.append((relative(case, match["file"]), int(match[2]), int(match[3])))
    assert places == [
        ("a-providers.yaml", 5, 14),
        ("b-routes.yaml", 6, 5),
        ("b-routes.yaml", 8, 15),
    ]
    assert lines[1].endswith("::unknown field 'requried' (hint: did you mean 'required'?)")


def test_the_github_format_escapes_what_would_end_a_property(cli: Callable[..., Result]) -> None:
    result = cli("validate", CORPUS / "bad-task-name", "--format", "github")

    # The title is the path `routes['Scoring Task']`; a ',' or ':' in it would cut the property.
    assert "title=routes['Scoring Task']::" in result.stdout
    result = cli("validate", CORPUS / "merge-key-inline", "--format", "github")
    assert "title=providers.ollama-a['<<']::" in result.stdout


def test_a_python_tag_never_runs(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("validate", CORPUS / "python-tag-never-runs")

    assert result.code == 1
    assert not (tmp_path / "reconciler-pwned").exists()


def test_a_file_over_5_mib_is_refused_without_being_parsed(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    big = tmp_path / "big.yaml"
    padding = "# " + "x" * 1022 + "\n"
    big.write_text(VALID + padding * (MAX_BYTES // len(padding) + 1), encoding="utf-8")
    assert big.stat().st_size > MAX_BYTES

    result = cli("validate", tmp_path, "--format", "json")

    assert result.code == 1
    [error] = json.loads(result.stdout)["errors"]
    assert (error["line"], error["column"], error["code"]) == (1, 1, "file_too_large")
    assert "larger than the limit of 5,242,880 bytes" in error["message"]


def test_a_file_of_exactly_5_mib_is_read(cli: Callable[..., Result], tmp_path: Path) -> None:
    full = tmp_path / "full.yaml"
    full.write_text(VALID + "#" * (MAX_BYTES - len(VALID) - 1) + "\n", encoding="utf-8")
    assert full.stat().st_size == MAX_BYTES

    result = cli("validate", tmp_path)

    assert result.code == 0, result.output


def test_a_valid_config_with_a_utf8_bom_passes(cli: Callable[..., Result], tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_bytes(b"\xef\xbb\xbf" + VALID.encode("utf-8"))

    result = cli("validate", tmp_path)

    assert result.code == 0, result.output
    assert "valid: 1 provider(s), 1 route(s) in 1 file(s)" in result.stdout


def test_a_nesting_bomb_deeper_than_the_parser_allows_is_reported_not_raised(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    depth = 5000
    (tmp_path / "routes.yaml").write_text(
        "version: 1\nroutes:\n  t:\n    params: " + "{a: " * depth + "1" + "}" * depth + "\n",
        encoding="utf-8",
    )

    result = cli("validate", tmp_path, "--format", "json")

    assert result.code == 1
    assert "Traceback" not in result.stderr
    [error] = json.loads(result.stdout)["errors"]
    # The 33rd nested mapping: root, routes, t, then the 30th `{a: ` (column 13 + 4 * 29).
    assert (error["line"], error["column"], error["code"]) == (4, 129, "too_deep")
