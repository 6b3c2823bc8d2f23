"""Hostile input handed to the command line: an error on one line each, never a traceback, and
nothing written. On SQLite and PostgreSQL.

The inputs: `history --limit` past any integer column, `enqueue` lines nested a hundred
thousand deep or holding NaN and huge numbers, saved plans that are malformed or edited into
rows the files could never declare, and database rows that `export` could not write back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, insert

from reconciler.adapters.db.tables import providers, routes
from tests.conftest import Result
from tests.db_inspect import recording_writes, snapshot, url_of
from tests.scoring_worker import job_rows

Run = Callable[..., Result]

CONFIG = """\
version: 1
providers:
  local:
    type: ollama
    endpoint: {base_url: "http://127.0.0.1:9"}
routes:
  scoring:
    provider: local
    model: llama3.1:8b
"""
ESC = "\x1b"
DEEP = 100_000


@pytest.fixture
def rc(cli: Run, engine: Engine) -> Run:
    """`reconciler --database-url URL [--config DIR] ARGS` in this process."""

    def run(config: Path | None, *args: str | Path) -> Result:
        given: list[str | Path] = ["--database-url", url_of(engine)]
        if config is not None:
            given += ["--config", config]
        return cli(*given, *args)

    return run


@pytest.fixture
def writes() -> Iterator[list[str]]:
    with recording_writes() as seen:
        yield seen


def assert_one_line_error(result: Result, *words: str) -> None:
    """Exit 1 with a single `error:` line holding `words`; no traceback, no raw escape."""
    assert result.code == 1, result.output
    assert "Traceback" not in result.output
    assert ESC not in result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)


# --- history ---------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["99999999999999999999", "0", "-1", "10001"])
def test_a_history_limit_out_of_range_is_refused_with_the_range(rc: Run, limit: str) -> None:
    result = rc(None, "history", "--limit", limit)
    assert result.code == 1, result.output
    assert "Traceback" not in result.output
    assert "Invalid value for '--limit': give a number of revisions from 1 to 10000" in (
        result.stderr
    )


def test_the_largest_history_limit_is_accepted(rc: Run) -> None:
    result = rc(None, "history", "--limit", "10000")
    assert result.code == 0, result.output
    assert "no revisions yet" in result.stdout


# --- enqueue ---------------------------------------------------------------------------------


def item(identifier: str) -> str:
    return json.dumps({"id": identifier, "text": "fine"})


# (what, the bad line, what the report says of it)
BAD_JSON_LINES = [
    ("nested", '{"id":"a","text":"x","extra":' + "[" * DEEP + "]" * DEEP + "}", "nested more"),
    ("nested, unclosed", '{"id":"a","text":"x","extra":' + "[" * DEEP, "nested more than 64"),
    ("NaN", '{"id": "a", "text": NaN}', "NaN is not a JSON number"),
    ("Infinity", '{"id": "a", "text": "x", "n": Infinity}', "Infinity is not a JSON number"),
    ("-Infinity", '{"id": "a", "text": "x", "n": -Infinity}', "-Infinity is not a JSON number"),
    ("1e999", '{"id": "a", "text": "x", "n": 1e999}', "a number is too large"),
    ("30 digits", f'{{"id": "a", "text": "x", "n": {"9" * 30}}}', "30 digits is out of range"),
    ("2**64", f'{{"id": "a", "text": "x", "n": {2**64}}}', "out of the 64-bit range"),
]


def test_an_enqueue_line_out_of_json_bounds_is_reported_at_its_line_and_nothing_queued(
    rc: Run, engine: Engine, tmp_path: Path
) -> None:
    for what, bad, message in BAD_JSON_LINES:
        source = tmp_path / "items.jsonl"
        source.write_text("\n".join([item("good-1"), bad, item("good-3")]) + "\n", "utf-8")
        result = rc(None, "enqueue", "scoring", source, "--allow-unrouted")
        assert result.code == 1, (what, result.output)
        assert "Traceback" not in result.output, what
        reported = [x for x in result.stderr.splitlines() if x.startswith(f"{source}:")]
        assert len(reported) == 1, (what, result.stderr)
        assert reported[0].startswith(f"{source}:2:1: not JSON: "), (what, reported)
        assert message in reported[0], (what, reported)
        assert f"error: 1 bad line(s) in {source}; nothing was queued" in result.stderr
        assert job_rows(url_of(engine)) == [], what


def test_enqueue_counts_lines_by_newlines_only_so_a_separator_in_a_text_keeps_numbers_right(
    rc: Run, engine: Engine, tmp_path: Path
) -> None:
    # U+2028, U+2029 and NEL may stand raw inside a JSON string; `str.splitlines` splits there.
    text = "one\u2028two\u2029three\x85four"
    source = tmp_path / "items.jsonl"
    lines = [json.dumps({"id": "a", "text": text}, ensure_ascii=False), "{oops"]
    source.write_text("\n".join(lines) + "\n", "utf-8")
    bad = rc(None, "enqueue", "scoring", source, "--allow-unrouted")
    assert bad.code == 1, bad.output
    assert f"{source}:2:2: not JSON" in bad.stderr
    assert job_rows(url_of(engine)) == []

    source.write_text(lines[0] + "\n" + item("b") + "\n", "utf-8")
    good = rc(None, "enqueue", "scoring", source, "--allow-unrouted")
    assert good.code == 0, good.output
    assert "scoring: 2 added" in good.stdout
    assert [r["payload"] for r in job_rows(url_of(engine))] == [{"text": text}, {"text": "fine"}]


def test_enqueue_escapes_control_characters_of_a_file_name_and_a_key_it_reports(
    rc: Run, engine: Engine, tmp_path: Path
) -> None:
    source = tmp_path / f"items{ESC}[31m.jsonl"
    source.write_text('{"id": "a", "text": "x", "\\u001b[31mred": 1}\n', "utf-8")
    result = rc(None, "enqueue", "scoring", source, "--allow-unrouted")
    assert result.code == 1, result.output
    assert ESC not in result.output and "Traceback" not in result.output
    shown = str(source).replace(ESC, "\\x1b")
    assert f"{shown}:1:1: \\x1b[31mred: not a field of this format" in result.stderr
    assert f"error: 1 bad line(s) in {shown}; nothing was queued" in result.stderr
    assert job_rows(url_of(engine)) == []


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
    rc: Run, engine: Engine, write_config: Callable[..., Path], writes: list[str], tmp_path: Path
) -> None:
    config = write_config({"config.yaml": CONFIG})
    saved = tmp_path / "plan.json"
    assert rc(config, "plan", "--out", saved).code == 0
    good = saved.read_text("utf-8")
    before = snapshot(engine)
    writes.clear()
    for what, make, message in MALFORMED:
        damaged = tmp_path / "damaged.json"
        content = make(good)
        if isinstance(content, bytes):
            damaged.write_bytes(content)
        else:
            damaged.write_text(content, "utf-8")
        result = rc(None, "apply", damaged)
        assert_one_line_error(result, str(damaged), message)
        assert "plan" in result.stderr, what
    assert writes == [] and snapshot(engine) == before
    assert rc(None, "apply", saved).code == 0  # the good plan still applies


# --- saved plans: edited into rows the files could never declare ------------------------------


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
    rc: Run, engine: Engine, write_config: Callable[..., Path], writes: list[str], tmp_path: Path
) -> None:
    config = write_config({"config.yaml": CONFIG})
    saved = tmp_path / "plan.json"
    assert rc(config, "plan", "--out", saved).code == 0
    good = saved.read_text("utf-8")
    before = snapshot(engine)
    writes.clear()
    for what, edit, message in EDITS:
        edited = tmp_path / "edited.json"
        edited.write_text(_edited(good, edit), "utf-8")
        result = rc(None, "apply", edited)
        assert_one_line_error(result, f"error: {edited}: ", message, "nothing was applied")
        assert "sk-literal" not in result.output, what
    assert writes == [] and snapshot(engine) == before
    assert rc(None, "apply", saved).code == 0


def test_every_problem_of_an_edited_saved_plan_is_one_line_then_a_count(
    rc: Run, engine: Engine, write_config: Callable[..., Path], writes: list[str], tmp_path: Path
) -> None:
    config = write_config({"config.yaml": CONFIG})
    saved = tmp_path / "plan.json"
    assert rc(config, "plan", "--out", saved).code == 0
    before = snapshot(engine)
    writes.clear()

    def edit(document: dict[str, Any]) -> None:
        _route(document).update(key=f"BAD KEY{ESC}[31m")
        _route(document)["essence"].update(enabled="yes")
        _endpoint(document).update(timeout_s=-1.0)

    saved.write_text(_edited(saved.read_text("utf-8"), edit), "utf-8")
    result = rc(None, "apply", saved)
    assert result.code == 1 and "Traceback" not in result.output and ESC not in result.output
    assert result.stderr.splitlines() == [
        f"{saved}: the saved plan's provider 'local' is not a valid spec: "
        "endpoint.timeout_s: must be greater than 0",
        f"{saved}: the saved plan's route 'BAD KEY\\x1b[31m' has an invalid name: use lowercase "
        "letters, digits, '-', '_' and '.', starting with a letter or digit, at most 63 "
        "characters",
        f"{saved}: the saved plan's route 'BAD KEY\\x1b[31m' is not a valid spec: "
        "enabled: must be true or false",
        f"error: 3 problems in {saved}; nothing was applied; make the plan again with "
        "`reconciler plan --out FILE`",
    ]
    assert writes == [] and snapshot(engine) == before


def test_a_saved_plan_that_creates_a_route_to_a_provider_it_deletes_is_refused(
    rc: Run, engine: Engine, write_config: Callable[..., Path], writes: list[str], tmp_path: Path
) -> None:
    config = write_config({"config.yaml": CONFIG})
    assert rc(config, "apply").code == 0
    write_config({"config.yaml": CONFIG + "  summaries: {provider: local, model: m}\n"})
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
    config = write_config({"config.yaml": CONFIG + f"    params: {{seed: {huge}}}\n"})
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
    config = write_config({"config.yaml": CONFIG + params})
    for args in (["plan"], ["apply"]):
        result = rc(config, *args)
        assert result.code == 0, result.output
        for raw in ("\u202e", "\x9b", "\u2028", "\t"):
            assert raw not in result.output, (args, raw)
        assert 'params.k\\u202e\\x9b: "\\x9b2J\\u2028\\tx"' in result.stdout, result.stdout


# --- export ----------------------------------------------------------------------------------


def insert_unmanaged(
    engine: Engine,
    provider_rows: Sequence[tuple[str, str, Any]] = (),
    route_rows: Sequence[tuple[str, str, Any]] = (),
) -> None:
    """Rows as a hand or an older tool could have written them: (name, type, config) and
    (task, provider, fallbacks)."""
    now = datetime.now(UTC)
    common = {"managed_by": "ops", "protect": False, "enabled": True}
    with engine.begin() as conn:
        for name, type_name, config in provider_rows:
            conn.execute(
                insert(providers).values(
                    name=name,
                    type=type_name,
                    config=config,
                    created_at=now,
                    updated_at=now,
                    **common,
                )
            )
        for task, provider, fallbacks in route_rows:
            conn.execute(
                insert(routes).values(
                    task=task,
                    provider=provider,
                    model="m",
                    required=False,
                    params={},
                    fallbacks=fallbacks,
                    created_at=now,
                    updated_at=now,
                    **common,
                )
            )


GOOD_CONFIG = {"endpoint": {"base_url": "http://10.0.0.9:11434"}}


def test_export_refuses_a_row_the_files_could_not_declare_in_one_line_and_writes_nothing(
    rc: Run, engine: Engine, tmp_path: Path
) -> None:
    insert_unmanaged(
        engine, [("legacy", "ollama", GOOD_CONFIG)], [(f"BAD KEY{ESC}[31m", "legacy", [])]
    )
    out = tmp_path / "exported"
    result = rc(None, "export", "--out", out)
    assert_one_line_error(
        result,
        "error: route 'BAD KEY\\x1b[31m' in the database has an invalid name: use lowercase",
        "nothing was exported: fix or remove these rows, then export again",
    )
    assert not out.exists()


def test_export_lists_every_row_it_cannot_write_back_and_writes_nothing(
    rc: Run, engine: Engine, tmp_path: Path
) -> None:
    insert_unmanaged(
        engine,
        [
            ("legacy", "ollama", GOOD_CONFIG),
            ("gone-type", "llamafile", GOOD_CONFIG),
            ("metadata", "ollama", {"endpoint": {"base_url": "http://169.254.169.254/"}}),
            ("a-list", "ollama", ["not", "a", "mapping"]),
            ("typo", "ollama", {**GOOD_CONFIG, "keep_alive": "5 minutes", "modle": 1}),
        ],
        [
            ("orphan", "legacy", [{"provider": "nobody", "model": "x"}]),
            ("fine", "legacy", []),
            ("shouty", "legacy", []),
        ],
    )
    with engine.begin() as conn:
        conn.execute(routes.update().where(routes.c.task == "shouty").values(model=f"m{ESC}[2J"))
    out = tmp_path / "exported"
    result = rc(None, "export", "--out", out)
    assert result.code == 1, result.output
    assert "Traceback" not in result.output and ESC not in result.output
    lines = result.stderr.splitlines()
    assert lines[:-1] == [
        "provider 'a-list' in the database is not a valid spec: config: must be a mapping",
        "provider 'gone-type' in the database is not a valid spec: type: 'llamafile' is not a "
        "registered provider type (registered: anthropic, ollama, openai_compatible)",
        lines[2],
        "provider 'typo' in the database is not a valid spec: keep_alive: keep_alive must be a "
        "duration such as 30s, 5m, 1h, 0 or -1",
        "provider 'typo' in the database is not a valid spec: modle: not a field of this format",
        "route 'orphan' in the database uses provider 'nobody' at fallbacks[0], which does not "
        "exist",
        "route 'shouty' in the database is not a valid spec: model: the value holds the control "
        "character U+001B (ESC) at character 2",
    ]
    assert lines[2].startswith(
        "provider 'metadata' in the database is not a valid spec: endpoint.base_url: "
    )
    assert lines[-1] == (
        "error: 7 problems; nothing was exported: fix or remove these rows, then export again"
    )
    assert not out.exists()


def test_export_refuses_files_the_loader_would_not_read_back(
    rc: Run, engine: Engine, tmp_path: Path
) -> None:
    # Valid JSON in a valid spec, but nested deeper than any config file may nest.
    deep: Any = "bottom"
    for _ in range(40):
        deep = {"d": deep}
    insert_unmanaged(engine, [("legacy", "ollama", GOOD_CONFIG)], [("deep", "legacy", [])])
    with engine.begin() as conn:
        conn.execute(routes.update().where(routes.c.task == "deep").values(params={"x": deep}))
    out = tmp_path / "exported"
    result = rc(None, "export", "--out", out)
    assert_one_line_error(
        result,
        "error: routes.yaml (not written): ",
        "nests deeper than 32 levels",
        "nothing was exported",
    )
    assert not out.exists()


def test_export_writes_line_separators_and_control_characters_so_they_read_back_exactly(
    cli: Run, rc: Run, engine: Engine, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    # LS, PS, NEL and CSI in a model name; a tab and a line feed in the text of params.
    model = '"a\\Lb\\Pc\\Nd\\x9be"'
    params = '    params: {note: "tab\\tand\\nnewline"}\n'
    config = write_config(
        {"config.yaml": CONFIG.replace("model: llama3.1:8b", f"model: {model}") + params}
    )
    assert rc(config, "apply").code == 0
    out = tmp_path / "exported"
    exported = rc(None, "export", "--out", out)
    assert exported.code == 0, exported.output
    text = (out / "routes.yaml").read_text("utf-8")
    for raw in ("\u2028", "\u2029", "\x85", "\x9b", "\t"):
        assert raw not in text
    assert cli("validate", out).code == 0
    again = rc(out, "plan", "--detailed-exitcode")
    assert again.code == 0, again.output
    assert "0 to create, 0 to update, 0 to delete, 2 unchanged." in again.stdout


def test_export_refuses_files_that_would_read_back_different_from_the_rows(
    rc: Run,
    engine: Engine,
    write_config: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # PyYAML's own dumper follows YAML 1.1, where `1e3` is text and so is written unquoted;
    # the loader follows YAML 1.2 and reads a number. The reload check catches any dumper
    # whose files would not give back exactly the rows.
    def yaml11_dump(document: dict[str, Any]) -> str:
        return yaml.dump(document, Dumper=yaml.SafeDumper, sort_keys=False, allow_unicode=True)

    monkeypatch.setattr("reconciler.adapters.export.dump_yaml", yaml11_dump)
    config = write_config({"config.yaml": CONFIG + '    params: {x: "1e3"}\n'})
    assert rc(config, "apply").code == 0
    out = tmp_path / "exported"
    result = rc(None, "export", "--out", out)
    assert_one_line_error(
        result,
        "error: route 'scoring' in the database would not be read back from YAML as it is "
        "stored (params.x); nothing was exported",
    )
    assert not out.exists()
