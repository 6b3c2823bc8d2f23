"""The JSON Schema of the config files: committed, current, and usable by any validator."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from bench.generate import write_config
from reconciler.core.config import ConfigLoader
from reconciler.core.yamldoc import parse_document
from reconciler.errors import ConfigInvalid
from tests.conftest import ROOT, Result

SCHEMA_FILE = ROOT / "reconciler.schema.json"
MODELINE = "# yaml-language-server: $schema=../reconciler.schema.json"
EXAMPLES = sorted((ROOT / "config").glob("*.yaml"))

PROVIDER = """\
version: 1
providers:
  local:
    type: ollama
    endpoint: {base_url: "http://127.0.0.1:11434"}
"""
ROUTE = """\
routes:
  scoring:
    provider: local
    model: llama3.1:8b
"""


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


def document(text: str) -> Any:
    """A config file's value as reconciler reads it (YAML 1.2 core scalars, as editors do)."""
    return parse_document("doc.yaml", text.encode()).value


def error_messages(validator: Draft202012Validator, value: Any) -> list[str]:
    return [error.message for error in validator.iter_errors(value)]


def test_the_committed_schema_is_what_reconciler_schema_prints(cli: Callable[..., Result]) -> None:
    result = cli("schema")
    assert result.code == 0, result.output
    committed = SCHEMA_FILE.read_text(encoding="utf-8")
    assert result.stdout == committed, (
        "reconciler.schema.json is out of date with the spec models: run `make schema` "
        "and commit the result"
    )


def test_schema_out_writes_the_same_text_to_the_file(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    target = tmp_path / "schema.json"
    result = cli("schema", "--out", target)
    assert result.code == 0, result.output
    assert target.read_text(encoding="utf-8") == SCHEMA_FILE.read_text(encoding="utf-8")
    assert f"wrote {target}" in result.stdout


def test_schema_out_into_a_missing_directory_fails_with_a_message(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    target = tmp_path / "missing" / "schema.json"
    result = cli("schema", "--out", target)
    assert result.code == 1
    assert f"cannot write {target}" in result.stderr
    assert "Traceback" not in result.output


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_there_are_example_config_files_to_check() -> None:
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_example_config_file_validates_against_the_schema(
    path: Path, validator: Draft202012Validator
) -> None:
    value = parse_document(path.name, path.read_bytes()).value
    assert error_messages(validator, value) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_example_config_file_names_the_schema_in_its_first_line(path: Path) -> None:
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    assert first_line == MODELINE
    referenced = first_line.split("$schema=", 1)[1]
    assert (path.parent / referenced).resolve() == SCHEMA_FILE.resolve()


def test_a_generated_config_of_every_provider_style_validates_against_the_schema(
    tmp_path: Path, validator: Draft202012Validator
) -> None:
    paths = write_config(tmp_path, routes=300, files=3)
    for path in paths:
        value = parse_document(path.name, path.read_bytes()).value
        assert error_messages(validator, value) == [], path.name


def test_a_minimal_valid_document_validates_against_the_schema(
    validator: Draft202012Validator,
) -> None:
    assert error_messages(validator, document(PROVIDER + ROUTE)) == []


INVALID = {
    "unknown route field": (PROVIDER + ROUTE + "    modle: qwen2.5:7b\n", "modle"),
    "unknown top-level field": (PROVIDER + ROUTE + "route: {}\n", "route"),
    "unknown provider type": (PROVIDER.replace("type: ollama", "type: bedrock"), "bedrock"),
    "field of another provider type": (PROVIDER + "    health_path: /health\n", "health_path"),
    "unknown endpoint field": (PROVIDER.replace("base_url", "base_ur1"), "base_ur1"),
    "quoted boolean": (PROVIDER + ROUTE + '    enabled: "yes"\n', "'yes' is not of type"),
    "literal api key": (
        PROVIDER.replace("11434", '11434", api_key: "sk-live-1234'),
        "is not valid under any of the given schemas",
    ),
    "version 2": (PROVIDER.replace("version: 1", "version: 2"), "1 was expected"),
}


@pytest.mark.parametrize(("text", "expected"), INVALID.values(), ids=INVALID.keys())
def test_the_schema_rejects_an_invalid_document_that_reconciler_also_rejects(
    text: str, expected: str, validator: Draft202012Validator
) -> None:
    messages = error_messages(validator, document(text))
    assert messages, "the JSON Schema accepted an invalid document"
    assert any(expected in message for message in messages), messages
    with pytest.raises(ConfigInvalid):
        ConfigLoader().load([("doc.yaml", text.encode())])
