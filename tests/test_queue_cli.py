"""`reconciler enqueue` and `reconciler jobs` as a user runs them, on both database engines."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from reconciler.adapters.db.engine import make_engine
from reconciler.cli import main
from tests.builders import ONE_ROUTE_CONFIG
from tests.conftest import Result
from tests.scoring_worker import empty_queue, job_rows, migrated_database

ITEMS = [
    {"id": "a", "text": "The Eiffel Tower is in Paris."},
    {"id": "b", "text": "Water boils at 100 C at sea level."},
    {
        "id": "c",
        "messages": [
            {"role": "system", "content": "Rate the answer."},
            {"role": "user", "content": "Q: 2+2? A: 4"},
        ],
    },
]

# (line, what the report says about it); the good lines between them are not reported.
BAD_LINES = [
    ("this is not json", "not JSON: Expecting value"),
    ('{"text": "no id here"}', "id: missing required field"),
    (
        '{"id": "both", "text": "x", "messages": [{"role": "user", "content": "y"}]}',
        "give exactly one of `text` or `messages`",
    ),
    ('{"id": "none"}', "give exactly one of `text` or `messages`"),
    ('{"id": 7, "text": "an id must be a string"}', "id: expected text, not a whole number"),
    ('{"id": "t", "text": 42}', "text: expected text, not a whole number"),
    ('{"id": "m", "messages": "hello"}', "messages: expected a list, not text"),
    (
        '{"id": "r", "messages": [{"role": "bot", "content": "hi"}]}',
        "messages.0.role: must be 'system', 'user' or 'assistant'",
    ),
    ('{"id": "e", "text": ""}', "text: must not be empty"),
    ('{"id": "x", "txt": "typo"}', "txt: not a field of this format"),
    ('["a", "list"]', "expected a mapping, not a list"),
]


def jsonl(items: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(item) + "\n" for item in items)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """One migrated database per engine for this module, with the `scoring` route applied."""
    admin = request.getfixturevalue("postgres_admin") if request.param == "postgresql" else None
    directory = tmp_path_factory.mktemp("queue")
    (directory / "config.yaml").write_text(ONE_ROUTE_CONFIG, encoding="utf-8")  # never dialled
    with migrated_database(request.param, admin, directory) as url:
        assert main(["--database-url", url, "--config", str(directory), "apply"]) == 0
        yield url, directory


@pytest.fixture
def db_url(database: tuple[str, Path]) -> str:
    url = database[0]
    empty_queue(url)
    return url


@pytest.fixture
def reconciler(
    database: tuple[str, Path], db_url: str, cli: Callable[..., Result]
) -> Callable[..., Result]:
    """Runs `reconciler ARGS` on this module's database, its queue emptied first."""

    def run(*args: str | Path) -> Result:
        return cli("--database-url", db_url, "--config", database[1], *args)

    return run


def test_enqueue_adds_text_and_message_items_and_jobs_lists_them(
    reconciler: Callable[..., Result], tmp_path: Path, db_url: str
) -> None:
    source = tmp_path / "items.jsonl"
    source.write_text(jsonl(ITEMS), encoding="utf-8")
    result = reconciler("enqueue", "scoring", source)
    assert result.code == 0, result.output
    assert f"scoring: 3 added, 0 skipped from {source}." in result.stdout
    assert "warning" not in result.stderr
    rows = job_rows(db_url)
    assert [(r["item_id"], r["status"], r["attempts"]) for r in rows] == [
        ("a", "queued", 0),
        ("b", "queued", 0),
        ("c", "queued", 0),
    ]
    assert rows[0]["payload"] == {"text": "The Eiffel Tower is in Paris."}
    assert rows[2]["payload"] == {"messages": ITEMS[2]["messages"]}

    shown = reconciler("jobs")
    assert shown.code == 0, shown.output
    header, line = shown.stdout.splitlines()[:2]
    assert header.split() == ["TASK", "QUEUED", "LEASED", "DONE", "DEAD"]
    assert line.split() == ["scoring", "3", "0", "0", "0"]

    as_json = reconciler("jobs", "--format", "json")
    assert as_json.code == 0, as_json.output
    assert json.loads(as_json.stdout) == {
        "format_version": 1,
        "tasks": {"scoring": {"queued": 3, "leased": 0, "done": 0, "dead": 0}},
        "dead": [],
    }


def test_a_second_enqueue_of_the_same_items_adds_nothing(
    reconciler: Callable[..., Result], tmp_path: Path, db_url: str
) -> None:
    source = tmp_path / "items.jsonl"
    source.write_text(jsonl(ITEMS), encoding="utf-8")
    assert reconciler("enqueue", "scoring", source).code == 0
    before = job_rows(db_url)
    again = reconciler("enqueue", "scoring", source)
    assert again.code == 0, again.output
    assert "scoring: 0 added, 3 skipped (3 already queued)" in again.stdout
    assert job_rows(db_url) == before
    # The same ids under another task are other jobs.
    other = reconciler("enqueue", "extraction", source, "--allow-unrouted")
    assert "extraction: 3 added, 0 skipped" in other.stdout
    assert len(job_rows(db_url)) == 6


def test_an_id_repeated_inside_one_file_is_queued_once_and_counted_as_skipped(
    reconciler: Callable[..., Result], tmp_path: Path, db_url: str
) -> None:
    source = tmp_path / "items.jsonl"
    repeated = {"id": "a", "text": "a second text under the same id"}
    source.write_text(jsonl([*ITEMS[:2], repeated, ITEMS[2]]), encoding="utf-8")
    result = reconciler("enqueue", "scoring", source)
    assert result.code == 0, result.output
    assert "scoring: 3 added, 1 skipped (1 repeated an id of an earlier line)" in result.stdout
    rows = {r["item_id"]: r for r in job_rows(db_url)}
    assert sorted(rows) == ["a", "b", "c"]
    assert rows["a"]["payload"] == {"text": ITEMS[0]["text"]}  # the first line wins


def test_every_bad_line_is_reported_at_its_place_and_nothing_is_queued(
    reconciler: Callable[..., Result], tmp_path: Path, db_url: str
) -> None:
    source = tmp_path / "mixed.jsonl"
    lines = []
    for number, (bad, _) in enumerate(BAD_LINES):
        lines += [json.dumps({"id": f"good-{number}", "text": "fine"}), bad]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = reconciler("enqueue", "scoring", source)
    assert result.code == 1, result.output
    for number, (_, message) in enumerate(BAD_LINES):
        line = 2 * number + 2
        reported = [x for x in result.stderr.splitlines() if x.startswith(f"{source}:{line}:")]
        assert len(reported) == 1, f"line {line}:\n{result.stderr}"
        assert message in reported[0]
    assert f"{len(BAD_LINES)} bad line(s) in {source}; nothing was queued" in result.stderr
    for number in range(len(BAD_LINES)):  # good lines are not reported
        assert f"{source}:{2 * number + 1}:" not in result.stderr
    assert job_rows(db_url) == []


def test_two_enqueues_of_the_same_items_at_once_add_each_item_once(
    reconciler: Callable[..., Result], tmp_path: Path, db_url: str
) -> None:
    source = tmp_path / "many.jsonl"
    source.write_text(jsonl([{"id": f"i{n}", "text": "x"} for n in range(3_000)]), "utf-8")
    start = threading.Barrier(2)
    codes: list[int] = []

    def enqueue() -> None:
        start.wait()
        codes.append(main(["--database-url", db_url, "enqueue", "scoring", str(source)]))

    threads = [threading.Thread(target=enqueue) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert codes == [0, 0]
    rows = job_rows(db_url)
    assert len(rows) == len({r["item_id"] for r in rows}) == 3_000


def test_items_can_be_read_from_stdin(
    reconciler: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(jsonl(ITEMS)))
    result = reconciler("enqueue", "scoring", "-")
    assert result.code == 0, result.output
    assert "scoring: 3 added, 0 skipped from <stdin>." in result.stdout
    assert [r["item_id"] for r in job_rows(db_url)] == ["a", "b", "c"]


def test_a_bad_line_on_stdin_is_reported_as_stdin_and_its_line(
    reconciler: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(jsonl(ITEMS[:1]) + "{oops\n"))
    result = reconciler("enqueue", "scoring", "-")
    assert result.code == 1
    assert "<stdin>:2:2: not JSON" in result.stderr
    assert job_rows(db_url) == []


def test_an_unknown_task_is_refused_with_the_closest_routed_task_and_nothing_queued(
    reconciler: Callable[..., Result], tmp_path: Path, db_url: str
) -> None:
    source = tmp_path / "items.jsonl"
    source.write_text(jsonl(ITEMS), encoding="utf-8")
    result = reconciler("enqueue", "scorng", source)
    assert result.code == 1, result.output
    assert "task 'scorng' has no route (did you mean 'scoring'?); nothing was queued" in (
        result.stderr
    )
    assert "--allow-unrouted" in result.stderr
    assert job_rows(db_url) == []


def test_allow_unrouted_queues_the_jobs_of_a_task_without_a_route_and_warns(
    reconciler: Callable[..., Result], tmp_path: Path, db_url: str
) -> None:
    source = tmp_path / "items.jsonl"
    source.write_text(jsonl(ITEMS), encoding="utf-8")
    result = reconciler("enqueue", "translation", source, "--allow-unrouted")
    assert result.code == 0, result.output
    assert "translation: 3 added" in result.stdout
    assert "warning: task translation has no route yet" in result.stderr
    assert {(r["task"], r["status"]) for r in job_rows(db_url)} == {("translation", "queued")}


def test_enqueue_says_how_many_items_were_already_queued_done_or_dead(
    reconciler: Callable[..., Result], tmp_path: Path, db_url: str
) -> None:
    source = tmp_path / "items.jsonl"
    source.write_text(jsonl(ITEMS), encoding="utf-8")
    assert reconciler("enqueue", "scoring", source).code == 0
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE scoring_jobs SET status = 'done' WHERE item_id = 'a'"))
            conn.execute(text("UPDATE scoring_jobs SET status = 'dead' WHERE item_id = 'b'"))
    finally:
        engine.dispose()
    again = reconciler("enqueue", "scoring", source)
    assert again.code == 0, again.output
    expected = "scoring: 0 added, 3 skipped (1 already dead, 1 already done, 1 already queued)"
    assert expected in again.stdout


def test_enqueue_refuses_an_invalid_task_name_an_empty_file_and_a_missing_one(
    reconciler: Callable[..., Result], tmp_path: Path, db_url: str
) -> None:
    source = tmp_path / "items.jsonl"
    source.write_text(jsonl(ITEMS), encoding="utf-8")
    bad_name = reconciler("enqueue", "Bad Task!", source)
    assert bad_name.code == 1
    assert "task 'Bad Task!' is not a valid name" in bad_name.stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n", encoding="utf-8")
    assert "holds no items" in reconciler("enqueue", "scoring", empty).stderr
    missing = reconciler("enqueue", "scoring", tmp_path / "nowhere.jsonl")
    assert missing.code == 1
    assert "cannot read" in missing.stderr
    assert job_rows(db_url) == []


def test_jobs_on_an_empty_queue_says_so(reconciler: Callable[..., Result]) -> None:
    shown = reconciler("jobs")
    assert shown.code == 0
    assert "The scoring queue is empty." in shown.stdout
    as_json = json.loads(reconciler("jobs", "--format", "json").stdout)
    assert as_json == {"format_version": 1, "tasks": {}, "dead": []}
