"""The JSON Schema of the config files: committed, current, and usable by any validator."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from bench.generate import write_config
from reconciler.adapters.files import discover
from reconciler.core.config import ConfigLoader
from reconciler.core.yaml_problems import YamlProblems
from reconciler.core.yamldoc import parse_document
from reconciler.errors import ConfigInvalid
from tests.conftest import FIXTURES, ROOT, Result

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


# --- the schema against the corpus of invalid files -----------------------------------------

CORPUS = sorted(p for p in (FIXTURES / "invalid").iterdir() if p.is_dir())
# Cases refused while reading the YAML, before there is a value for any schema to check.
YAML_RULES = {
    "alias-bomb": "anchors and aliases are refused by reconciler's YAML reader",
    "anchor": "anchors and aliases are refused by reconciler's YAML reader",
    "comment-only-file": "a file with no document has no value to validate",
    "control-character": "a raw control character is a YAML syntax error",
    "duplicate-key-in-one-file": "a YAML parser keeps one of two equal keys; the value hides it",
    "duplicate-provider-in-one-file": "a YAML parser keeps one of two equal keys",
    "empty-file": "an empty file has no value to validate",
    "explicit-tags": "tags are refused by reconciler's YAML reader",
    "invalid-utf8": "bytes that are not UTF-8 are not text, let alone YAML",
    "merge-key-inline": "merge keys are refused by reconciler's YAML reader",
    "merge-key-with-alias": "merge keys and aliases are refused by reconciler's YAML reader",
    "multiple-documents": "a schema validates one document; the reader refuses a second",
    "nesting-too-deep": "the reader refuses the depth before building a value",
    "non-string-keys": "JSON has only string keys; the reader refuses the others",
    "python-tag-never-runs": "tags are refused by reconciler's YAML reader",
    "tab-indentation": "a tab in indentation is a YAML syntax error",
    "yaml-syntax-error": "not YAML",
}
# Rules `validate` holds that a JSON Schema cannot express: the schema accepts these cases.
CANNOT_EXPRESS = {
    "fallback-undeclared-provider": "a fallback names a provider that no file declares",
    "route-undeclared-provider": "a route names a provider that no file declares",
    "repeated-fallback": "a provider/model pair repeated across the primary and fallbacks, "
    "whatever their params (uniqueItems compares whole items)",
    "same-provider-in-two-files": "a name is unique across files; a schema sees one file",
    "same-task-in-two-files": "a name is unique across files; a schema sees one file",
    "url-decimal-encoded-ip": "the egress policy normalises the host (decimal, hex, octal)",
    "url-ipv4-mapped-ipv6": "the egress policy reads the IPv4 address inside an IPv6 one",
    "url-ipv6-link-local": "the egress policy checks address ranges, in any spelling",
    "url-link-local-metadata": "the egress policy checks address ranges, in any spelling",
    "url-metadata-hostname": "the egress policy normalises host names (IDNA, case, dots)",
    "url-unspecified-address": "the egress policy checks address ranges, in any spelling",
}


def corpus_verdict(validator: Draft202012Validator, case: Path) -> str:
    """ "yaml" when reconciler's reader refuses a file, else "rejected" or "accepted"."""
    errors = []
    for path in discover([case]):
        try:
            value = parse_document(path.name, path.read_bytes()).value
        except YamlProblems:
            return "yaml"
        errors += error_messages(validator, value)
    return "rejected" if errors else "accepted"


@pytest.fixture(scope="module")
def verdicts(validator: Draft202012Validator) -> dict[str, str]:
    return {case.name: corpus_verdict(validator, case) for case in CORPUS}


def test_the_cases_refused_before_any_schema_are_exactly_the_named_yaml_rules(
    verdicts: dict[str, str],
) -> None:
    assert {name for name, verdict in verdicts.items() if verdict == "yaml"} == set(YAML_RULES)


def test_the_schema_accepts_exactly_the_invalid_cases_whose_rule_it_cannot_express(
    verdicts: dict[str, str],
) -> None:
    accepted = {name for name, verdict in verdicts.items() if verdict == "accepted"}
    assert accepted == set(CANNOT_EXPRESS), (
        "the schema accepts a case it could reject (fix the schema), or rejects one listed as "
        "beyond it (drop it from CANNOT_EXPRESS)"
    )
    assert all(reason.strip() for reason in CANNOT_EXPRESS.values())


@pytest.mark.parametrize(
    "case",
    [
        "bad-provider-name",
        "literal-authorization-header",
        "header-secret-in-any-spelling",
        "invalid-keep-alive",
        "url-ftp-scheme",
        "missing-type",
        "nul-in-model-name",
    ],
)
def test_the_schema_rejects_what_issue_10_names(verdicts: dict[str, str], case: str) -> None:
    assert verdicts[case] == "rejected"


SCHEMA_RULES = {
    "uppercase provider name": (PROVIDER.replace("  local:", "  Local:"), "'Local' does not match"),
    "literal Authorization header": (
        PROVIDER.replace('11434"}', '11434", headers: {authorization: "Bearer sk-1"}}'),
        "'Bearer sk-1' is not of type 'object'",
    ),
    "keep_alive with a space": (
        PROVIDER + "    keep_alive: 5 minutes\n",
        "'5 minutes' does not match",
    ),
    "base_url that is not a url": (
        PROVIDER.replace("http://127.0.0.1:11434", "not a url"),
        "'not a url' does not match",
    ),
    "ftp base_url": (
        PROVIDER.replace("http://", "ftp://"),
        "'ftp://127.0.0.1:11434' does not match",
    ),
    "output schema of a string": (
        PROVIDER + ROUTE + "    output_schema: {type: string}\n",
        "'object' was expected",
    ),
    "provider without a type": (
        PROVIDER.replace("    type: ollama\n", "    keep_alive: 5m\n"),
        "'type' is a required property",
    ),
}


def all_messages(errors: Any) -> list[str]:
    """Every error's message, with those of the branches each `anyOf`/`oneOf` tried."""
    return [m for error in errors for m in [error.message, *all_messages(error.context or ())]]


@pytest.mark.parametrize(("text", "expected"), SCHEMA_RULES.values(), ids=SCHEMA_RULES.keys())
def test_the_schema_expresses_the_rules_a_regex_or_a_const_can(
    text: str, expected: str, validator: Draft202012Validator
) -> None:
    messages = all_messages(validator.iter_errors(document(text)))
    assert messages, "the JSON Schema accepted an invalid document"
    assert any(expected in message for message in messages), messages
    with pytest.raises(ConfigInvalid):
        ConfigLoader().load([("doc.yaml", text.encode())])


@pytest.mark.parametrize(
    "keep_alive", ["5m", "300s", "250ms", "300", '"300"', "0", "-1", '"-1"', "999999999"]
)
def test_the_schema_accepts_every_keep_alive_reconciler_accepts(
    keep_alive: str, validator: Draft202012Validator
) -> None:
    text = PROVIDER + f"    keep_alive: {keep_alive}\n"
    assert error_messages(validator, document(text)) == []
    ConfigLoader().load([("doc.yaml", text.encode())])


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:11434",
        "HTTPS://api.example.com/v1/",
        "http://[::1]:8000",
        "https://openrouter.ai/api/v1",
        "http://ollama.internal:11434/path%20with%20space",
    ],
)
def test_the_schema_accepts_every_base_url_form_reconciler_accepts(
    base_url: str, validator: Draft202012Validator
) -> None:
    text = PROVIDER.replace("http://127.0.0.1:11434", base_url)
    assert error_messages(validator, document(text)) == []
    ConfigLoader().load([("doc.yaml", text.encode())])
