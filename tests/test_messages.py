"""Messages in reconciler's words: what is wrong and how to fix it, never Pydantic's or typer's.

Every invalid file of the corpus, and the cases of issue 10, are run through `validate`; every
command's `--help` is read. None may carry a phrase of the libraries underneath.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from pydantic import ValidationError

from reconciler.cli import command_line
from reconciler.core.scoring import JobInput
from tests.conftest import FIXTURES, Result

CASES = sorted(p for p in (FIXTURES / "invalid").iterdir() if p.is_dir())
# Phrases of Pydantic's and typer's that an operator should never read.
LIBRARY_PHRASES = (
    "Input should",
    "Value error",
    "validation error",
    "type=",
    "pydantic",
    "For further information",
    "String should",
    "List should",
    "Field required",
    "Extra inputs",
    "<float range>",
    "<int range>",
    "list[",
)
OLLAMA = """\
version: 1
providers:
  local:
    type: ollama
    endpoint:
      base_url: {base_url}
    keep_alive: {keep_alive}
"""
ROUTE = """\
version: 1
providers:
  local:
    type: openai_compatible
    endpoint: {{base_url: "http://127.0.0.1:8000/v1"}}
routes:
  scoring:
    provider: local
    model: llama3.1:8b
    {line}
"""


def library_phrases(text: str) -> list[str]:
    return [phrase for phrase in LIBRARY_PHRASES if phrase.lower() in text.lower()]


def problems(cli: Callable[..., Result], directory: Path) -> list[dict[str, Any]]:
    result = cli("validate", directory, "--format", "json")
    assert "Traceback" not in result.stderr
    errors: list[dict[str, Any]] = json.loads(result.stdout)["errors"]
    return errors


def ollama(keep_alive: str = "5m", base_url: str = "http://127.0.0.1:11434") -> str:
    return OLLAMA.format(keep_alive=keep_alive, base_url=base_url)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_no_problem_of_the_corpus_is_in_a_library_s_words(
    cli: Callable[..., Result], case: Path
) -> None:
    for error in problems(cli, case):
        assert not library_phrases(error["message"]), error
        assert not library_phrases(error["hint"]), error
    text = cli("validate", case)
    assert not library_phrases(text.output), text.output


def test_base_url_that_is_not_a_url_says_so_and_shows_one(
    cli: Callable[..., Result], write_config: Callable[..., Path]
) -> None:
    directory = write_config({"p.yaml": ollama(base_url="not a url")})

    [error] = problems(cli, directory)

    assert (error["line"], error["column"], error["path"]) == (
        6,
        17,
        "providers.local.endpoint.base_url",
    )
    assert error["message"] == (
        "not a URL: expected an http:// or https:// URL like http://127.0.0.1:11434"
    )
    assert "missing" not in error["message"]
    assert "http://127.0.0.1:11434" in error["hint"]


def test_a_url_with_another_scheme_still_names_the_scheme(
    cli: Callable[..., Result], write_config: Callable[..., Path]
) -> None:
    directory = write_config({"p.yaml": ollama(base_url="ftp://models.example.com")})

    [error] = problems(cli, directory)

    assert "the URL scheme must be http or https, not 'ftp'" in error["message"]


def test_a_bad_keep_alive_hint_names_every_form_keep_alive_accepts(
    cli: Callable[..., Result], write_config: Callable[..., Path]
) -> None:
    directory = write_config({"p.yaml": ollama(keep_alive="5 minutes")})

    [error] = problems(cli, directory)

    assert (error["line"], error["column"], error["code"]) == (7, 17, "duration")
    assert error["message"] == "keep_alive must be a duration such as 30s, 5m, 1h, 0 or -1"
    for form in ('"5m"', '"300s"', "300", "-1"):
        assert form in error["hint"], form
    assert "quote" not in error["hint"]


@pytest.mark.parametrize(
    "keep_alive", ["5m", '"300s"', "250ms", "1.5h", "300", '"300"', "0", "-1", '"-1"']
)
def test_every_keep_alive_the_hint_suggests_is_accepted(
    cli: Callable[..., Result], write_config: Callable[..., Path], keep_alive: str
) -> None:
    directory = write_config({"p.yaml": ollama(keep_alive=keep_alive)})

    result = cli("validate", directory)

    assert result.code == 0, result.output


@pytest.mark.parametrize("keep_alive", ["1.5", "-5", "true", "5 minutes", "1234567890"])
def test_a_keep_alive_in_no_form_it_accepts_gets_the_same_helpful_hint(
    cli: Callable[..., Result], write_config: Callable[..., Path], keep_alive: str
) -> None:
    directory = write_config({"p.yaml": ollama(keep_alive=keep_alive)})

    [error] = problems(cli, directory)

    assert (error["line"], error["code"]) == (7, "duration")
    assert "300s" in error["hint"]


BAD_ROUTE_LINES = {
    "text given a number": (
        "prompt: 5",
        "routes.scoring.prompt",
        "expected text, not a whole number",
        'quote it to keep it as text: "5"',
    ),
    "empty text": ("prompt: ''", "routes.scoring.prompt", "must not be empty", "write a value"),
    "a list given a mapping": (
        "fallbacks: {a: 1}",
        "routes.scoring.fallbacks",
        "expected a list, not a mapping",
        "`- item`",
    ),
    "a boolean given text": (
        "enabled: 'yes'",
        "routes.scoring.enabled",
        "expected true or false, not text",
        "write true or false",
    ),
    "too many fallbacks": (
        "fallbacks: [" + ", ".join(["{provider: local, model: m}"] * 17) + "]",
        "routes.scoring.fallbacks",
        "must have at most 16 items",
        "keep at most 16 items",
    ),
}


@pytest.mark.parametrize(
    ("line", "path", "message", "hint"), BAD_ROUTE_LINES.values(), ids=BAD_ROUTE_LINES.keys()
)
def test_a_type_or_bound_error_says_what_was_expected_and_what_was_given(
    cli: Callable[..., Result],
    write_config: Callable[..., Path],
    line: str,
    path: str,
    message: str,
    hint: str,
) -> None:
    directory = write_config({"r.yaml": ROUTE.format(line=line)})

    [error] = problems(cli, directory)

    assert (error["line"], error["path"]) == (10, path)
    assert error["message"] == message
    assert hint in error["hint"]


PROVIDER_LINES = {
    "a bound": ("      timeout_s: 99999", 6, "must be at most 3600", "at most 3600"),
    "a header that is neither text nor a reference": (
        "      headers: {X-Team: 5}",
        6,
        "expected text or a mapping, not a whole number",
        "{env: NAME}",
    ),
    "a lower bound": ("    max_concurrency: 0", 5, "must be at least 1", "at least 1"),
    "a health path": ("    health_path: health", 5, "not a URL path", "/health"),
}


@pytest.mark.parametrize(
    ("line", "number", "message", "hint"), PROVIDER_LINES.values(), ids=PROVIDER_LINES.keys()
)
def test_a_provider_field_error_is_in_reconciler_s_words(
    cli: Callable[..., Result],
    write_config: Callable[..., Path],
    line: str,
    number: int,
    message: str,
    hint: str,
) -> None:
    text = (
        "version: 1\nproviders:\n  local:\n    type: openai_compatible\n"
        '    endpoint:\n      base_url: "http://127.0.0.1:8000/v1"\n'
    )
    if line.startswith("      "):  # an endpoint field: beside base_url
        text = text.replace("    endpoint:\n", "    endpoint:\n" + line + "\n")
    else:
        text = text.replace("    endpoint:\n", line + "\n    endpoint:\n")

    [error] = problems(cli, directory=write_config({"p.yaml": text}))

    assert error["line"] == number
    assert error["message"] == message
    assert hint in error["hint"]


@pytest.mark.parametrize(
    ("item", "given"),
    [
        ({"id": "a", "text": "x", "messages": [{"role": "user", "content": "y"}]}, "both"),
        ({"id": "a"}, "neither"),
    ],
)
def test_an_item_with_both_or_neither_text_and_messages_says_which(
    item: dict[str, Any], given: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        JobInput.model_validate(item)

    [error] = raised.value.errors(include_url=False)
    assert error["msg"] == f"give exactly one of `text` or `messages`; this item gives {given}"


def commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command's words, from the root down (typer's groups carry `commands`)."""
    yield path
    for name, command in getattr(group, "commands", {}).items():
        yield from commands(command, (*path, name))


ALL_COMMANDS = list(commands(typer.main.get_command(command_line())))


def test_every_command_is_asked_for_its_help() -> None:
    assert len(ALL_COMMANDS) >= 20
    assert ("validate",) in ALL_COMMANDS and ("jobs", "retry") in ALL_COMMANDS


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: " ".join(c) or "reconciler")
def test_help_shows_readable_metavars_and_no_meaningless_default(
    cli: Callable[..., Result], command: tuple[str, ...]
) -> None:
    result = cli(*command, "--help")

    assert result.code == 0, result.output
    assert not library_phrases(result.stdout), result.stdout
    assert "[default: 0]" not in result.stdout
    assert "[default: True]" not in result.stdout


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ((), "-v, --verbose             More logs"),
        (("validate",), "paths... <path>"),
        (("apply",), "--lock-timeout <seconds>"),
        (("run",), "--resync <seconds>"),
        (("run",), "--probe-interval <seconds>"),
        (("jobs", "retry"), "--item <id>"),
    ],
)
def test_help_names_what_an_option_takes(
    cli: Callable[..., Result], command: tuple[str, ...], shown: str
) -> None:
    result = cli(*command, "--help")

    assert shown in result.stdout


def test_enqueued_items_a_setting_and_try_are_told_in_the_same_words(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [
        {"text": "no id"},
        {"id": 7, "text": "x"},
        {"id": "t", "text": 42},
        {"id": "m", "messages": "hello"},
        {"id": "r", "messages": [{"role": "bot", "content": "x"}]},
        {"id": "e", "text": ""},
        {"id": "x", "txt": "typo"},
        ["a", "list"],
    ]
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    database = f"sqlite:///{tmp_path / 'r.db'}"
    enqueued = cli("--database-url", database, "enqueue", "scoring", items)
    assert enqueued.code == 1
    assert f"{len(lines)} bad line(s)" in enqueued.stderr
    assert not library_phrases(enqueued.output), enqueued.output
    assert "items.jsonl:2:1: id: expected text, not a whole number" in enqueued.stderr
    assert "items.jsonl:8:1: expected a mapping, not a list" in enqueued.stderr
    tried = cli("--database-url", database, "try", "scoring", "")
    assert tried.code == 1 and "the item's text: must not be empty" in tried.stderr
    monkeypatch.setenv("RECONCILER_LOG_FORMAT", "xml")
    setting = cli("validate", FIXTURES.parent.parent / "config")
    assert setting.code == 1
    assert "RECONCILER_LOG_FORMAT: must be 'text' or 'json'" in setting.stderr
    assert not library_phrases(tried.output + setting.output)
