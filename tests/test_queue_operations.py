"""`jobs retry` and `jobs purge`: dead jobs put back, finished jobs deleted, and never a job a
worker holds, on SQLite and PostgreSQL. `jobs` alone still shows the queue.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters.db import queue_store as queue
from reconciler.adapters.db.engine import make_engine
from reconciler.core.scoring import parse_duration, parse_since
from tests.builders import items
from tests.conftest import Result
from tests.fakeprovider import FakeServer, answering, failing
from tests.scoring_bed import NOW, Bed, put_jobs, set_up_bed
from tests.scoring_worker import empty_queue, job_rows, migrated_database

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One migrated database per engine for this module; each test starts with an empty queue."""
    admin = request.getfixturevalue("postgres_admin") if request.param == "postgresql" else None
    with migrated_database(request.param, admin, tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture
def url(database: str) -> str:
    empty_queue(database)
    return database


@pytest.fixture
def bed(url: str, fake: FakeServer, tmp_path: Path, cli: Callable[..., Result]) -> Bed:
    """The fake providers and routes of tests/test_scoring.py, on this module's database."""
    return set_up_bed(url, fake, tmp_path, cli)


def by_item(url: str) -> dict[str, dict[str, Any]]:
    return {f"{r['task']}/{r['item_id']}": r for r in job_rows(url)}


@pytest.fixture
def run(url: str, cli: Callable[..., Result]) -> Callable[..., Result]:
    def reconciler(*args: str) -> Result:
        return cli("--database-url", url, *args)

    return reconciler


def a_queue_in_every_state(url: str) -> None:
    put_jobs(
        url,
        {"item_id": "queued", "status": "queued", "attempts": 0},
        {"item_id": "leased", "status": "leased", "lease_owner": "w", "lease_expires_at": NOW},
        {"item_id": "done"},
        {"item_id": "dead-1", "status": "dead", "attempts": 5, "error": "local/m: server error"},
        {"item_id": "dead-2", "status": "dead", "attempts": 5, "error": "local/m: timeout"},
        {"task": "triage", "item_id": "dead-1", "status": "dead", "error": "other task"},
    )


# --- retry -------------------------------------------------------------------------------------


def test_retry_puts_every_dead_job_back_with_attempts_reset_and_the_last_error_kept(
    url: str, run: Callable[..., Result]
) -> None:
    a_queue_in_every_state(url)
    before = by_item(url)
    result = run("jobs", "retry", "scoring", "--dead")
    assert result.code == 0, result.output
    assert "scoring: 2 dead job(s) put back in the queue." in result.stdout
    after = by_item(url)
    for name, error in (("dead-1", "server error"), ("dead-2", "timeout")):
        row = after[f"scoring/{name}"]
        assert (row["status"], row["attempts"], row["finished_at"]) == ("queued", 0, None)
        assert row["error"] == f"previous: local/m: {error}"
        due = row["not_before"].replace(tzinfo=row["not_before"].tzinfo or UTC)
        assert abs((due - datetime.now(UTC)).total_seconds()) < 60
    for name in ("scoring/queued", "scoring/leased", "scoring/done", "triage/dead-1"):
        assert after[name] == before[name], name


def test_retry_of_some_items_puts_back_only_those_that_are_dead(
    url: str, run: Callable[..., Result]
) -> None:
    a_queue_in_every_state(url)
    result = run("jobs", "retry", "scoring", "--item", "dead-2", "--item", "done", "--item", "gone")
    assert result.code == 0, result.output
    assert "scoring: 1 of 3 item(s) put back in the queue; 2 not dead" in result.stdout
    rows = by_item(url)
    assert rows["scoring/dead-2"]["status"] == "queued"
    assert rows["scoring/dead-1"]["status"] == "dead"
    assert rows["scoring/done"]["status"] == "done"


def test_a_retried_job_is_scored_again_and_ends_done(bed: Bed) -> None:
    bed.fake.behaviours["local"].chat = failing(500)
    bed.enqueue("triage", items(2))
    assert bed.drain("triage").dead == 2
    retried = bed.run("jobs", "retry", "triage", "--dead")
    assert "triage: 2 dead job(s) put back in the queue." in retried.stdout
    assert all(r["error"].startswith("previous: local/") for r in bed.rows().values())
    bed.fake.behaviours["local"].chat = answering()
    stats = bed.drain("triage")
    assert (stats.done, stats.dead) == (2, 0)
    for row in bed.rows().values():
        assert (row["status"], row["attempts"], row["error"]) == ("done", 1, None)


# --- purge -------------------------------------------------------------------------------------


def test_purge_deletes_the_finished_jobs_asked_for_and_nothing_queued_or_leased(
    url: str, run: Callable[..., Result]
) -> None:
    a_queue_in_every_state(url)
    done = run("jobs", "purge", "scoring", "--done")
    assert done.code == 0, done.output
    assert "scoring: purged 1 done job(s)." in done.stdout
    both = run("jobs", "purge", "scoring", "--done", "--dead")
    assert "scoring: purged 0 done and 2 dead job(s)." in both.stdout
    assert sorted(by_item(url)) == ["scoring/leased", "scoring/queued", "triage/dead-1"]


def test_purge_older_than_keeps_what_finished_recently(
    url: str, run: Callable[..., Result]
) -> None:
    put_jobs(
        url,
        {"item_id": "old", "finished_at": NOW - timedelta(days=8)},
        {"item_id": "new", "finished_at": NOW - timedelta(hours=1)},
        {"item_id": "old-dead", "status": "dead", "finished_at": NOW - timedelta(days=30)},
    )
    result = run("jobs", "purge", "scoring", "--done", "--dead", "--older-than", "7d")
    assert result.code == 0, result.output
    assert "scoring: purged 1 done and 1 dead job(s) finished more than 7d ago." in result.stdout
    assert sorted(by_item(url)) == ["scoring/new"]


def test_retry_and_purge_never_touch_a_job_a_worker_holds(url: str) -> None:
    put_jobs(url, {"item_id": "a", "status": "queued", "attempts": 0})
    engine = make_engine(url)
    try:
        (held,) = queue.claim(engine, "worker-1", ["scoring"], 1, timedelta(minutes=5), NOW)
        assert queue.retry_dead(engine, "scoring", None, NOW) == 0
        assert queue.retry_dead(engine, "scoring", ["a"], NOW) == 0
        assert queue.purge(engine, "scoring", ["done", "dead"], None) == {"done": 0, "dead": 0}
        finished = {"status": "done", "result": {"score": 1}, "finished_at": NOW}
        assert queue.finish(engine, held.id, "worker-1", finished)  # the lease is still held
        with pytest.raises(ValueError, match="only finished jobs are purged"):
            queue.purge(engine, "scoring", ["leased"], None)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["retry", "scoring"], "say which jobs to put back: --dead"),
        (["purge", "scoring"], "say what to purge: --done, --dead, or both"),
        (["purge", "scoring", "--done", "--older-than", "soon"], "write a duration such as"),
        (["retry", "Bad Task", "--dead"], "is not a valid name"),
    ],
    ids=["retry-nothing", "purge-nothing", "bad-duration", "bad-task"],
)
def test_retry_and_purge_refuse_to_guess(
    url: str, run: Callable[..., Result], args: list[str], message: str
) -> None:
    a_queue_in_every_state(url)
    before = by_item(url)
    result = run("jobs", *args)
    assert result.code == 1
    assert message in result.stderr
    assert by_item(url) == before


# --- jobs alone ----------------------------------------------------------------------------------


def test_jobs_alone_still_shows_the_queue_in_text_and_json(
    url: str, run: Callable[..., Result]
) -> None:
    a_queue_in_every_state(url)
    shown = run("jobs")
    assert shown.code == 0, shown.output
    assert shown.stdout.splitlines()[1].split() == ["scoring", "1", "1", "1", "2"]
    document = json.loads(run("jobs", "--format", "json").stdout)
    assert document["tasks"]["triage"] == {"queued": 0, "leased": 0, "done": 0, "dead": 1}
    helped = run("jobs", "--help")
    assert "retry" in helped.stdout and "purge" in helped.stdout


# --- durations and times ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("1h", 3600), ("7d", 604800), ("2w", 1209600), ("1h30m", 5400)],
)
def test_durations_read_as_a_person_writes_them(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "1", "h", "1y", "-1h", "1.5h", "1 h", "9" * 20 + "d"])
def test_anything_else_is_no_duration(text: str) -> None:
    assert parse_duration(text) is None


def test_since_is_a_duration_ago_or_an_iso_time_in_utc() -> None:
    now = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_since("1h", now) == datetime(2025, 5, 1, 11, 0, tzinfo=UTC)
    assert parse_since("2025-04-30T10:00:00", now) == datetime(2025, 4, 30, 10, 0, tzinfo=UTC)
    assert parse_since("2025-04-30T12:00:00+02:00", now) == datetime(2025, 4, 30, 10, tzinfo=UTC)
    assert parse_since("yesterday", now) is None
