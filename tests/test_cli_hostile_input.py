"""Hostile arguments and lines handed to the command line: an error on one line each, never a
traceback, and nothing written. On SQLite and PostgreSQL.

The inputs: `history --limit` past any integer column, and `enqueue` lines nested a hundred
thousand deep or holding NaN and huge numbers. Saved plans: test_hostile_plans.py; export:
test_hostile_export.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.cli_checks import DEEP, ESC, Run
from tests.db_inspect import url_of
from tests.scoring_worker import job_rows

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
