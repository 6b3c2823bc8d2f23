"""Hostile saved plans handed to `apply`: malformed, or edited into rows the files could never
declare. An error on one line each, never a traceback, and nothing written. On SQLite and
PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from sqlalchemy import Engine

from tests.builders import ONE_ROUTE_CONFIG
from tests.cli_checks import DEEP, ESC, Run, assert_one_line_error
from tests.db_inspect import snapshot


class Saved(NamedTuple):
    path: Path
    text: str
    before: dict[str, Any]  # the database's rows when the plan was saved


@pytest.fixture
def saved(
    rc: Run, engine: Engine, write_config: Callable[..., Path], writes: list[str], tmp_path: Path
) -> Saved:
    """The one-route config's plan, saved to plan.json; writes are counted from here on."""
    path = tmp_path / "plan.json"
    assert rc(write_config({"config.yaml": ONE_ROUTE_CONFIG}), "plan", "--out", path).code == 0
    before = snapshot(engine)
    writes.clear()
    return Saved(path, path.read_text("utf-8"), before)


# --- saved plans: malformed ------------------------------------------------------------------


def _edited(good: str, edit: Callable[[dict[str, Any]], object]) -> str:
    document = json.loads(good)
    edit(document)
    return json.dumps(document)


def _first(document: dict[str, Any]) -> dict[str, Any]:
    action: dict[str, Any] = document["actions"][0]
    return action


# (what, the plan file's text made from the good one, what the message says)
MALFORMED: list[tuple[str, Callable[[str], str | bytes], str]] = [
    ("nested", lambda _: '{"format_version": 1, "x": ' + "[" * DEEP, "nested more than 64"),
    ("NaN", lambda g: g.replace('"line": 3', '"line": NaN'), "NaN is not a JSON number"),
    ("huge integer", lambda g: g.replace('"line": 3', '"line": ' + "9" * 40), "40 digits"),
    ("not UTF-8", lambda _: b'{"format_version": "\xff"}', "not UTF-8"),
    ("not JSON", lambda g: g[:-40], "not valid JSON"),
    (
        "version a list",
        lambda g: _edited(g, lambda d: d.update(format_version=[1] * 10)),
        "an unknown format version",
    ),
    ("no base digest", lambda g: _edited(g, lambda d: d.pop("base_digest")), "base_digest is"),
    (
        "base digest not one",
        lambda g: _edited(g, lambda d: d.update(base_digest="x" * 65)),
        "base_digest is not a SHA-256 digest",
    ),
    (
        "actions a mapping",
        lambda g: _edited(g, lambda d: d.update(actions={})),
        "actions is not a list",
    ),
    (
        "op a number",
        lambda g: _edited(g, lambda d: _first(d).update(op=3)),
        "actions[0].op is not text",
    ),
    (
        "kind unknown",
        lambda g: _edited(g, lambda d: _first(d).update(kind=f"{ESC}[31m")),
        "actions[0].kind is not one of provider, route",
    ),
    (
        "drift a string",
        lambda g: _edited(g, lambda d: _first(d).update(drift="yes")),
        "actions[0].drift is not true or false",
    ),
    (
        "no essence",
        lambda g: _edited(g, lambda d: _first(d).pop("essence")),
        "actions[0].essence is missing",
    ),
    (
        "source line past INTEGER",
        lambda g: _edited(g, lambda d: _first(d)["source"].update(line=2**40)),
        "actions[0].source.line is out of range",
    ),
    (
        "source line a float",
        lambda g: _edited(g, lambda d: _first(d)["source"].update(line=3.5)),
        "actions[0].source.line is not a whole number",
    ),
    (
        "a change without its new value",
        lambda g: _edited(g, lambda d: _first(d).update(changes=[{"path": "x", "old": 1}])),
        "actions[0].changes[0].new is missing",
    ),
    (
        "unchanged negative",
        lambda g: _edited(g, lambda d: d["summary"].update(unchanged=-1)),
        "summary.unchanged is negative",
    ),
]


def test_a_malformed_saved_plan_is_one_line_naming_the_file_and_nothing_is_written(
    rc: Run, engine: Engine, saved: Saved, writes: list[str], tmp_path: Path
) -> None:
    for what, make, message in MALFORMED:
        damaged = tmp_path / "damaged.json"
        content = make(saved.text)
        if isinstance(content, bytes):
            damaged.write_bytes(content)
        else:
            damaged.write_text(content, "utf-8")
        result = rc(None, "apply", damaged)
        assert_one_line_error(result, str(damaged), message)
        assert "plan" in result.stderr, what
    assert writes == [] and snapshot(engine) == saved.before
    assert rc(None, "apply", saved.path).code == 0  # the good plan still applies


# --- saved plans: edited into rows the files could never declare -----------------------------


def _route(document: dict[str, Any]) -> dict[str, Any]:
    return next(a for a in document["actions"] if a["kind"] == "route")


def _provider(document: dict[str, Any]) -> dict[str, Any]:
    return next(a for a in document["actions"] if a["kind"] == "provider")


def _endpoint(document: dict[str, Any]) -> dict[str, Any]:
    endpoint: dict[str, Any] = _provider(document)["essence"]["config"]["endpoint"]
    return endpoint


# (what, the edit, what the one line says)
EDITS: list[tuple[str, Callable[[dict[str, Any]], object], str]] = [
    (
        "a route named with an escape sequence",
        lambda d: _route(d).update(key=f"BAD KEY{ESC}[31m"),
        "the saved plan's route 'BAD KEY\\x1b[31m' has an invalid name: use lowercase letters",
    ),
    (
        "a provider named with an escape sequence",
        lambda d: _provider(d).update(key=f"Local{ESC}]0;title"),
        "the saved plan's provider 'Local\\x1b]0;title' has an invalid name",
    ),
    (
        "a model name holding an escape sequence",
        lambda d: _route(d)["essence"].update(model=f"llama{ESC}[2J"),
        "route 'scoring' is not a valid spec: model: the value holds the control character "
        "U+001B (ESC) at character 6",
    ),
    (
        "a tab in a provider's field",
        lambda d: _provider(d)["essence"]["config"].update(keep_alive="5m\t"),
        "provider 'local' is not a valid spec: keep_alive: the value holds the control "
        "character U+0009 (tab) at character 3",
    ),
    (
        "NUL in a params key",
        lambda d: _route(d)["essence"].update(params={"a\u0000": 1}),
        "route 'scoring' is not a valid spec: params['a\\x00']: the key holds the control "
        "character U+0000 (NUL) at character 2",
    ),
    (
        "a field the format does not have",
        lambda d: _route(d)["essence"].update(modle="x"),
        "the saved plan's route 'scoring' is not a valid spec: modle: not a field of this format",
    ),
    (
        "yes for a boolean",
        lambda d: _route(d)["essence"].update(enabled="yes"),
        "route 'scoring' is not a valid spec: enabled: must be true or false",
    ),
    (
        "an unregistered provider type",
        lambda d: _provider(d)["essence"].update(type="nope"),
        "provider 'local' is not a valid spec: type: 'nope' is not a registered provider type",
    ),
    (
        "a metadata address",
        lambda d: _endpoint(d).update(base_url="http://169.254.169.254/latest"),
        "provider 'local' is not a valid spec: endpoint.base_url: ",
    ),
    (
        "a literal key",
        lambda d: _endpoint(d).update(api_key="sk-literal-must-not-show"),
        "endpoint.api_key: a credential must be a reference, not a literal value",
    ),
    (
        "a header that is neither text nor a reference",
        lambda d: _endpoint(d).update(headers={"X-Team": 5}),
        "endpoint.headers.X-Team: must be text, or must be a mapping",
    ),
    (
        "a zero timeout",
        lambda d: _endpoint(d).update(timeout_s=0.0),
        "endpoint.timeout_s: must be greater than 0",
    ),
    (
        "a field repeated inside config",
        lambda d: _provider(d)["essence"]["config"].update(type="ollama"),
        "provider 'local' is not a valid spec: config: repeats the field 'type'",
    ),
    (
        "a field left out",
        lambda d: _route(d)["essence"].pop("required"),
        "route 'scoring' is not written as `reconciler plan` writes it (required)",
    ),
    (
        "a whole number where plan writes a float",
        lambda d: _endpoint(d).update(timeout_s=60),
        "provider 'local' is not written as `reconciler plan` writes it "
        "(config.endpoint.timeout_s)",
    ),
    (
        "no content",
        lambda d: _route(d).update(essence=None),
        "the saved plan's route 'scoring' has no content to write",
    ),
    (
        "a route to a provider that does not exist",
        lambda d: _route(d)["essence"].update(provider="ghost"),
        "route 'scoring' uses provider 'ghost' as its provider, which does not exist",
    ),
    (
        "a fallback that repeats the primary",
        lambda d: _route(d)["essence"].update(
            fallbacks=[{"provider": "local", "model": "llama3.1:8b", "params": {}}]
        ),
        "tries provider 'local' with model 'llama3.1:8b' again at fallbacks[0]",
    ),
]


def test_an_edited_saved_plan_is_held_to_the_rules_of_the_files_and_nothing_is_written(
    rc: Run, engine: Engine, saved: Saved, writes: list[str], tmp_path: Path
) -> None:
    for what, edit, message in EDITS:
        edited = tmp_path / "edited.json"
        edited.write_text(_edited(saved.text, edit), "utf-8")
        result = rc(None, "apply", edited)
        assert_one_line_error(result, f"error: {edited}: ", message, "nothing was applied")
        assert "sk-literal" not in result.output, what
    assert writes == [] and snapshot(engine) == saved.before
    assert rc(None, "apply", saved.path).code == 0


def test_every_problem_of_an_edited_saved_plan_is_one_line_then_a_count(
    rc: Run, engine: Engine, saved: Saved, writes: list[str]
) -> None:
    def edit(document: dict[str, Any]) -> None:
        _route(document).update(key=f"BAD KEY{ESC}[31m")
        _route(document)["essence"].update(enabled="yes")
        _endpoint(document).update(timeout_s=-1.0)

    saved.path.write_text(_edited(saved.text, edit), "utf-8")
    result = rc(None, "apply", saved.path)
    assert result.code == 1 and "Traceback" not in result.output and ESC not in result.output
    assert result.stderr.splitlines() == [
        f"{saved.path}: the saved plan's provider 'local' is not a valid spec: "
        "endpoint.timeout_s: must be greater than 0",
        f"{saved.path}: the saved plan's route 'BAD KEY\\x1b[31m' has an invalid name: "
        "use lowercase letters, digits, '-', '_' and '.', starting with a letter or digit, at "
        "most 63 characters",
        f"{saved.path}: the saved plan's route 'BAD KEY\\x1b[31m' is not a valid spec: "
        "enabled: must be true or false",
        f"error: 3 problems in {saved.path}; nothing was applied; make the plan again with "
        "`reconciler plan --out FILE`",
    ]
    assert writes == [] and snapshot(engine) == saved.before


def test_a_saved_plan_that_creates_a_route_to_a_provider_it_deletes_is_refused(
    rc: Run, engine: Engine, write_config: Callable[..., Path], writes: list[str], tmp_path: Path
) -> None:
    config = write_config({"config.yaml": ONE_ROUTE_CONFIG})
    assert rc(config, "apply").code == 0
    write_config({"config.yaml": ONE_ROUTE_CONFIG + "  summaries: {provider: local, model: m}\n"})
    saved = tmp_path / "plan.json"
    assert rc(config, "plan", "--out", saved).code == 0
    document = json.loads(saved.read_text("utf-8"))
    delete = {"op": "delete", "kind": "provider", "key": "local", "drift": False, "changes": []}
    document["actions"].append({**delete, "essence": None, "source": {"file": None, "line": None}})
    saved.write_text(json.dumps(document), "utf-8")
    before = snapshot(engine)
    writes.clear()
    result = rc(None, "apply", saved)
    assert_one_line_error(
        result, "route 'summaries' uses provider 'local' as its provider, which does not exist"
    )
    assert writes == [] and snapshot(engine) == before


def test_plan_out_refuses_to_save_a_plan_apply_could_not_read_back(
    rc: Run, engine: Engine, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    huge = "1" + "0" * 39
    config = write_config({"config.yaml": ONE_ROUTE_CONFIG + f"    params: {{seed: {huge}}}\n"})
    saved = tmp_path / "plan.json"
    result = rc(config, "plan", "--out", saved)
    assert result.code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stderr.count("\n") == 1
    assert f"error: the plan was not saved to {saved}: it is not plain JSON" in result.stderr
    assert "an integer of 40 digits is out of range" in result.stderr
    assert not saved.exists()


def test_plan_and_apply_show_the_controls_the_files_may_hold_escaped(
    rc: Run, engine: Engine, write_config: Callable[..., Path]
) -> None:
    # The loader allows C1 controls and bidirectional overrides in keys and values, and tabs
    # and line breaks in the text of params; none of them may reach the terminal raw.
    params = '    params: {"k\\u202e\\x9b": "\\x9b2J\\u2028\\tx"}\n'
    config = write_config({"config.yaml": ONE_ROUTE_CONFIG + params})
    for args in (["plan"], ["apply"]):
        result = rc(config, *args)
        assert result.code == 0, result.output
        for raw in ("\u202e", "\x9b", "\u2028", "\t"):
            assert raw not in result.output, (args, raw)
        assert 'params.k\\u202e\\x9b: "\\x9b2J\\u2028\\tx"' in result.stdout, result.stdout
