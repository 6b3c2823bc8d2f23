"""Scoring through the production code path against fake Ollama and OpenAI-compatible servers:
`score --once`, the `ScoringWorker` in-process, worker processes killed or run side by side, and
the daemon. Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from reconciler.adapters.db import queue_store
from reconciler.core.scoring import DEFAULT_OUTPUT_SCHEMA, SCORING_RUBRIC
from reconciler.service.scoring import ScoringOptions, ScoringWorker
from tests.builders import LABEL_PROMPT, LABEL_SCHEMA, items
from tests.conftest import Result
from tests.daemon_harness import Daemon
from tests.fakeprovider import (
    Calls,
    FakeModel,
    FakeServer,
    answering,
    failing,
    item_of,
    rate_limited_once,
)
from tests.scoring_bed import FAST, Bed, set_up_bed
from tests.scoring_worker import Worker, empty_queue, job_rows, migrated_database


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One migrated database per engine for this module; each test applies its own config."""
    admin = request.getfixturevalue("postgres_admin") if request.param == "postgresql" else None
    with migrated_database(request.param, admin, tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture
def bed(database: str, fake: FakeServer, tmp_path: Path, cli: Callable[..., Result]) -> Bed:
    empty_queue(database)
    return set_up_bed(database, fake, tmp_path, cli)


# --- scoring end to end ------------------------------------------------------------------------


def test_score_once_scores_every_item_and_stores_who_answered_and_how(bed: Bed) -> None:
    messages = [{"role": "user", "content": "Q: 2+2? A: 4"}]
    bed.enqueue("scoring", [*items(5), {"id": "chat", "messages": messages}])
    result = bed.run("score", "--once")
    assert result.code == 0, result.output
    assert "scored 6, retried 0, dead 0; 0 still queued" in result.stdout
    rows = bed.rows()
    assert len(rows) == 6
    for row in rows.values():
        assert row["status"] == "done"
        assert row["result"] == {"score": 0.8, "rationale": "clear and accurate"}
        assert (row["provider"], row["model"]) == ("local", "llama3.1:8b")
        assert 0 < row["latency_ms"] < 5_000
        assert (row["prompt_tokens"], row["completion_tokens"]) == (42, 9)
        assert (row["attempts"], row["error"], row["lease_owner"]) == (1, None, None)
        assert row["generation"] == bed.generation()
        assert row["finished_at"] is not None
    sent = {item_of(body): body for body in bed.chats("local")}
    assert len(sent) == 6 and not bed.chats("cloud")
    first = sent["item number 0"]
    assert first["format"] == DEFAULT_OUTPUT_SCHEMA
    assert first["messages"][0] == {"role": "system", "content": SCORING_RUBRIC}
    assert first["stream"] is False
    assert sent["Q: 2+2? A: 4"]["messages"] == [
        {"role": "system", "content": SCORING_RUBRIC},
        *messages,
    ]
    shown = json.loads(bed.run("jobs", "--format", "json").stdout)
    assert shown["tasks"]["scoring"] == {"queued": 0, "leased": 0, "done": 6, "dead": 0}


def test_a_routes_prompt_and_output_schema_are_sent_to_ollama_and_openai(bed: Bed) -> None:
    label = answering(content=json.dumps({"label": "ham"}))
    bed.fake.behaviours["local"].chat = label
    bed.fake.behaviours["cloud"].chat = label
    bed.enqueue("labelling", items(2))
    bed.enqueue("extraction", items(2))
    result = bed.run("score", "--once")
    assert result.code == 0, result.output
    for row in bed.rows().values():
        assert (row["status"], row["result"]) == ("done", {"label": "ham"})
    ollama = bed.chats("local")
    assert len(ollama) == 2
    for body in ollama:
        assert body["format"] == LABEL_SCHEMA
        assert body["messages"][0] == {"role": "system", "content": LABEL_PROMPT}
    openai = bed.chats("cloud")
    assert len(openai) == 2
    for body in openai:
        assert body["model"] == "gpt-4o-mini"
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["schema"] == LABEL_SCHEMA
        assert body["messages"][0] == {"role": "system", "content": LABEL_PROMPT}
    assert {r["provider"] for r in bed.rows("extraction").values()} == {"cloud"}


def test_the_fallback_serves_when_the_primary_answers_500(bed: Bed) -> None:
    bed.fake.behaviours["local"].chat = failing(500)
    bed.enqueue("scoring", items(3))
    result = bed.run("score", "--once")
    assert result.code == 0, result.output
    assert "scored 3, retried 0, dead 0" in result.stdout
    for row in bed.rows().values():
        assert row["status"] == "done"
        assert (row["provider"], row["model"]) == ("cloud", "gpt-4o-mini")
        assert row["result"]["score"] == 0.6  # the fallback's answer
        assert (row["attempts"], row["error"]) == (1, None)
    assert len(bed.chats("local")) == 3
    assert len(bed.chats("cloud")) == 3


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("I would rate this 0.8 out of 1", "the answer: not valid JSON"),
        (
            json.dumps({"score": 7, "rationale": "too high"}),
            "the answer does not match the output schema at score: "
            "7 is greater than the maximum of 1",
        ),
        (
            json.dumps({"score": 0.5}),
            "the answer does not match the output schema at the answer: "
            "'rationale' is a required property",
        ),
    ],
    ids=["not-json", "out-of-range", "missing-field"],
)
def test_a_malformed_answer_is_retried_then_the_job_is_dead_with_its_error(
    bed: Bed, content: str, error: str
) -> None:
    for name in ("local", "cloud"):
        bed.fake.behaviours[name].chat = answering(content=content)
    bed.enqueue("scoring", items(2))
    stats = bed.drain("scoring")
    assert (stats.done, stats.retried, stats.dead) == (0, 2, 2)
    for row in bed.rows().values():
        assert (row["status"], row["attempts"], row["result"]) == ("dead", 2, None)
        assert f"local/llama3.1:8b: {error}" in row["error"]
        assert f"cloud/gpt-4o-mini: {error}" in row["error"]
        assert row["lease_owner"] is None and row["finished_at"] is not None
    assert (
        len(bed.chats("local")) == len(bed.chats("cloud")) == 8
    )  # 2 items x 2 attempts x 2 (asked again once)
    shown = bed.run("jobs")
    assert "dead: scoring/item-00 after 2 attempt(s): local/llama3.1:8b: " in shown.stdout


def _drop_tasks_late(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop drops a finished attempt's task half a second late."""
    forget = ScoringWorker._forget

    def late(self: ScoringWorker, job_id: int) -> Callable[[asyncio.Task[None]], None]:
        now = forget(self, job_id)
        return lambda task: asyncio.get_running_loop().call_later(0.5, now, task)

    monkeypatch.setattr(ScoringWorker, "_forget", late)


def _hear_writes_late(monkeypatch: pytest.MonkeyPatch) -> None:
    """An outcome is committed, and the attempt that wrote it hears so 0.3 s later."""
    finish_many = queue_store.finish_many

    def slow_to_return(*args: Any) -> set[int]:
        kept = finish_many(*args)
        time.sleep(0.3)
        return kept

    monkeypatch.setattr(queue_store, "finish_many", slow_to_return)


@pytest.mark.parametrize(
    "late", [_drop_tasks_late, _hear_writes_late], ids=["task-dropped-late", "write-heard-late"]
)
def test_a_retry_claimed_before_its_last_attempt_is_done_is_worked_not_left_to_lapse(
    bed: Bed, monkeypatch: pytest.MonkeyPatch, late: Callable[[pytest.MonkeyPatch], None]
) -> None:
    """On a busy machine the next attempt of a retried job can be claimed before the attempt
    that queued it is done. The claim found the job queued, so it is a new attempt: it must be
    worked, not taken for a call still running and left until its lease lapses (then dead,
    "leases expired", never asked again)."""
    late(monkeypatch)
    for name in ("local", "cloud"):
        bed.fake.behaviours[name].chat = answering(content="no JSON here")
    bed.enqueue("scoring", items(2))
    stats = bed.drain("scoring", replace(FAST, lease_s=2.0))
    assert (stats.done, stats.retried, stats.dead, stats.lost_lease) == (0, 2, 2, 0)
    for row in bed.rows().values():
        assert (row["status"], row["attempts"]) == ("dead", 2), row["error"]
        assert "not valid JSON" in row["error"]
    assert len(bed.chats("local")) == 2 * 2 * 2  # two jobs, two attempts, asked twice each


def test_a_lease_that_lapses_while_the_outcome_waits_for_the_database_is_not_asked_again(
    bed: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database refuses writes for longer than a lease: the lease lapses while the answer
    waits to be written, and this worker claims the job back. Its call is done and its answer
    is on the way, so the job is not asked again, and is counted once."""
    down_until = time.monotonic() + 2.0
    finish_many, renew = queue_store.finish_many, queue_store.renew

    def refused(write: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            if time.monotonic() < down_until:
                raise OperationalError("UPDATE scoring_jobs", {}, Exception("database is down"))
            return write(*args)

        return call

    monkeypatch.setattr(queue_store, "finish_many", refused(finish_many))
    monkeypatch.setattr(queue_store, "renew", refused(renew))
    bed.enqueue("scoring", items(1))
    options = replace(FAST, lease_s=0.6)
    stats = bed.run_until("scoring", options, lambda s: s.done + s.lost_lease > 0, within=15)
    assert (stats.done, stats.retried, stats.dead, stats.lost_lease) == (1, 0, 0, 0)
    (row,) = bed.rows().values()
    assert (row["status"], row["result"]["score"]) == ("done", 0.8)
    assert row["attempts"] >= 2  # claimed back at least once while the database was down
    assert len(bed.chats("local")) == 1


def test_an_answer_whose_body_is_not_json_ends_dead_never_stuck_leased(bed: Bed) -> None:
    for name in ("local", "cloud"):
        bed.fake.behaviours[name].chat = answering()
        bed.fake.behaviours[name].not_json = True
    bed.enqueue("scoring", items(2))
    stats = bed.drain("scoring")
    assert (stats.done, stats.dead) == (0, 2)
    for row in bed.rows().values():
        assert (row["status"], row["lease_owner"]) == ("dead", None)
        assert "local/llama3.1:8b: /api/chat: not valid JSON" in row["error"]


def test_a_429_with_retry_after_delays_the_next_attempt_by_that_long(bed: Bed) -> None:
    calls = Calls(rate_limited_once("1", answering()))
    bed.fake.behaviours["local"].chat = calls
    bed.enqueue("triage", items(3))
    result = bed.run("score", "--once")
    assert result.code == 0, result.output
    assert "scored 3, retried 3, dead 0" in result.stdout
    assert set(calls.per_item.values()) == {2}
    for row in bed.rows().values():
        assert (row["status"], row["attempts"], row["error"]) == ("done", 2, None)
    by_item: dict[str, list[float]] = {}
    for request in bed.fake.requests:
        if request.path == "/api/chat":
            by_item.setdefault(item_of(request.body), []).append(request.at)
    for item, (first, second) in by_item.items():
        assert second - first >= 0.95, f"{item}: retried after {second - first:.2f}s"


def test_a_model_the_server_does_not_have_makes_the_job_dead_without_a_retry(bed: Bed) -> None:
    bed.fake.behaviours["local"].models = [FakeModel("qwen2.5:7b")]  # llama3.1:8b removed
    bed.enqueue("triage", items(2))
    stats = bed.drain("triage", ScoringOptions(max_attempts=5, backoff_base_s=0.01))
    assert (stats.done, stats.retried, stats.dead) == (0, 0, 2)
    for row in bed.rows().values():
        assert (row["status"], row["attempts"]) == ("dead", 1)
        assert "request refused (404)" in row["error"]
        assert "model 'llama3.1:8b' not found" in row["error"]
    assert len(bed.chats("local")) == 2


def test_jobs_of_a_task_that_is_not_ready_wait_until_it_is(bed: Bed) -> None:
    bed.fake.behaviours["cloud"].models = []  # gpt-4o-mini is not served yet
    bed.enqueue("extraction", items(2))
    bed.enqueue("scoring", items(2))
    waiting = bed.run("score", "--once")
    assert waiting.code == 0, waiting.output
    assert "extraction: not_ready" in waiting.stderr and "its jobs wait" in waiting.stderr
    assert "scored 2, retried 0, dead 0; 2 still queued" in waiting.stdout
    assert {(r["status"], r["attempts"]) for r in bed.rows("extraction").values()} == {
        ("queued", 0)
    }
    assert not bed.chats("cloud")
    bed.fake.behaviours["cloud"].models = [FakeModel("gpt-4o-mini")]
    bed.fake.behaviours["cloud"].chat = answering(content=json.dumps({"label": "spam"}))
    served = bed.run("score", "--once")
    assert served.code == 0, served.output
    assert "scored 2, retried 0, dead 0; 0 still queued" in served.stdout
    for row in bed.rows("extraction").values():
        assert (row["status"], row["result"], row["provider"]) == (
            "done",
            {"label": "spam"},
            "cloud",
        )


def test_a_route_changed_while_jobs_wait_serves_them_with_the_new_model(bed: Bed) -> None:
    bed.enqueue("triage", items(3, "early"))
    assert bed.run("score", "--once").code == 0
    bed.enqueue("triage", items(3, "late"))
    bed.apply(triage_model="qwen2.5:7b")
    result = bed.run("score", "--once")
    assert result.code == 0, result.output
    rows = bed.rows()
    assert {r["model"] for k, r in rows.items() if k.startswith("early")} == {"llama3.1:8b"}
    assert {r["model"] for k, r in rows.items() if k.startswith("late")} == {"qwen2.5:7b"}
    assert {r["status"] for r in rows.values()} == {"done"}
    asked = {item_of(body): body["model"] for body in bed.chats("local")}
    assert asked == {
        **{f"early number {i}": "llama3.1:8b" for i in range(3)},
        **{f"late number {i}": "qwen2.5:7b" for i in range(3)},
    }


# --- faults ------------------------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def test_a_worker_killed_mid_batch_and_a_new_one_leave_every_item_scored_once(bed: Bed) -> None:
    calls = Calls(answering())
    bed.fake.behaviours["local"].chat = calls
    bed.fake.behaviours["local"].delay_s = 0.2
    bed.enqueue("triage", items(50))

    def done() -> int:
        return sum(1 for r in job_rows(bed.url) if r["status"] == "done")

    with Worker.start(bed.url, "triage", "--lease-s", "1") as first:
        wait_until(lambda: done() >= 8, 30, "8 items scored by the first worker")
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        first.read_rest()
    before = {k: r for k, r in bed.rows().items() if r["status"] == "done"}
    assert 8 <= len(before) < 50
    assert any(r["status"] == "leased" for r in bed.rows().values())  # left behind by the kill

    with Worker.start(bed.url, "triage", "--lease-s", "1") as second:
        stats = second.finish()
    assert stats == {"done": 50 - len(before), "retried": 0, "dead": 0, "lost_lease": 0}
    rows = bed.rows()
    assert len(rows) == 50
    assert {r["status"] for r in rows.values()} == {"done"}
    for item, row in before.items():  # what the killed worker finished was not scored again
        assert rows[item] == row
    ids = {r["id"]: k for k, r in rows.items()}
    assert not {ids[i] for i in second.claimed} & set(before)
    assert {ids[i] for i in second.claimed} == set(rows) - set(before)
    assert set(calls.per_item) == {f"item number {i}" for i in range(50)}
    for item, row in before.items():
        assert calls.per_item[row["payload"]["text"]] == 1, item
    assert max(calls.per_item.values()) <= 2  # only calls in flight at the kill were repeated


def test_calls_reuse_their_connections_at_every_concurrency(bed: Bed) -> None:
    # At most one connection per slot, however many calls: none is closed and opened again.
    original = (bed.directory / "config.yaml").read_text("utf-8")
    assert "max_concurrency: 4\n" in original
    bed.fake.behaviours["local"].chat_delay_s = 0.02
    for concurrency in (4, 20):
        wider = original.replace("max_concurrency: 4\n", f"max_concurrency: {concurrency}\n")
        (bed.directory / "config.yaml").write_text(wider, "utf-8")
        applied = bed.run("apply")
        assert applied.code == 0, applied.output
        bed.fake.connections.clear()
        bed.enqueue("triage", items(concurrency * 10, f"c{concurrency}"))
        assert bed.drain("triage").done == concurrency * 10
        assert 1 <= bed.fake.connections["local"] <= concurrency


def test_two_workers_at_once_never_take_the_same_job(bed: Bed) -> None:
    calls = Calls(answering())
    bed.fake.behaviours["local"].chat = calls
    bed.fake.behaviours["local"].delay_s = 0.05
    bed.enqueue("triage", items(60))
    with (
        Worker.start(bed.url, "triage", "--batch", "8", "--wait-go") as a,
        Worker.start(bed.url, "triage", "--batch", "8", "--wait-go") as b,
    ):
        for worker in (a, b):
            worker.read_until("ready")
        for worker in (a, b):
            worker.go()
        stats = [worker.finish() for worker in (a, b)]
    assert a.claimed and b.claimed, "both workers should have taken jobs"
    assert not set(a.claimed) & set(b.claimed)
    rows = bed.rows()
    assert sorted(a.claimed + b.claimed) == sorted(r["id"] for r in rows.values())
    assert sum(s["done"] for s in stats) == 60
    assert all(s["lost_lease"] == 0 and s["retried"] == 0 for s in stats)
    assert {r["status"] for r in rows.values()} == {"done"}
    assert calls.per_item == {f"item number {i}": 1 for i in range(60)}


def test_a_lease_is_renewed_while_its_job_waits_for_a_provider_slot(bed: Bed) -> None:
    # One worker claims up to 64 jobs at once but runs 4 at a time: the last of them wait
    # longer than the lease. The other worker must not take them over while they wait.
    calls = Calls(answering())
    bed.fake.behaviours["local"].chat = calls
    bed.fake.behaviours["local"].delay_s = 0.1
    bed.enqueue("triage", items(60))
    with (
        Worker.start(bed.url, "triage", "--lease-s", "1", "--wait-go") as a,
        Worker.start(bed.url, "triage", "--lease-s", "1", "--wait-go") as b,
    ):
        for worker in (a, b):
            worker.read_until("ready")
        for worker in (a, b):
            worker.go()
        stats = [worker.finish() for worker in (a, b)]
    assert all(s["lost_lease"] == 0 for s in stats), stats
    assert not set(a.claimed) & set(b.claimed)
    assert calls.per_item == {f"item number {i}": 1 for i in range(60)}
    assert {r["status"] for r in bed.rows().values()} == {"done"}


# --- the daemon --------------------------------------------------------------------------------


def jobs_of(daemon: Daemon, task: str) -> dict[str, int]:
    counted: dict[str, int] = daemon.get("/api/v1/jobs").json()["tasks"].get(task, {})
    return counted


def test_a_sigkilled_daemons_jobs_are_taken_over_within_ten_seconds_and_scored_once(
    bed: Bed, start_daemon: Callable[..., Daemon]
) -> None:
    # The daemon runs with its own defaults: nothing shortens its lease for the test. The worker
    # that takes over is started beforehand, so that the time measured is the take-over's own,
    # not that of starting a process on a loaded machine.
    calls = Calls(answering())
    bed.fake.behaviours["local"].chat = calls
    daemon = start_daemon(bed.url, bed.directory)
    daemon.wait_for(lambda: daemon.get("/readyz/tasks").status_code == 200, what="tasks ready")
    with Worker.start(bed.url, "triage", "--wait-go") as other:
        other.read_until("ready")
        bed.fake.behaviours["local"].chat_delay_s = 0.5  # slow: calls are in flight at the kill
        bed.enqueue("triage", items(40))
        daemon.wait_for(lambda: jobs_of(daemon, "triage").get("done", 0) >= 4, what="4 done")
        daemon.send(signal.SIGKILL)
        daemon.proc.wait()
        killed_at = time.monotonic()
        other.go()
        dead_owner = f":{daemon.proc.pid}:"
        at_kill = bed.rows()
        stranded = {k for k, r in at_kill.items() if dead_owner in (r["lease_owner"] or "")}
        assert stranded, "the kill should leave jobs leased by the dead daemon"
        done_before = {k for k, r in at_kill.items() if r["status"] == "done"}
        bed.fake.behaviours["local"].chat_delay_s = 0
        wait_until(
            lambda: not any(dead_owner in (r["lease_owner"] or "") for r in bed.rows().values()),
            10,
            "another worker to take every job the killed daemon held",
        )
        print(f"taken over {time.monotonic() - killed_at:.1f} s after the kill")
        stats = other.finish()
    rows = bed.rows()
    assert {(r["status"], r["lease_owner"]) for r in rows.values()} == {("done", None)}
    assert stats == {"done": 40 - len(done_before), "retried": 0, "dead": 0, "lost_lease": 0}
    assert set(calls.per_item) == {f"item number {i}" for i in range(40)}
    # Only the calls in flight at the kill were asked again.
    repeated = {int(text.rsplit(" ", 1)[1]) for text, n in calls.per_item.items() if n > 1}
    assert max(calls.per_item.values()) <= 2
    assert {f"item-{i:02d}" for i in repeated} <= stranded


def test_the_daemon_scores_what_is_enqueued_and_sigterm_gives_calls_in_flight_back(
    bed: Bed, start_daemon: Callable[..., Daemon]
) -> None:
    daemon = start_daemon(bed.url, bed.directory)
    daemon.wait_for(lambda: daemon.get("/readyz/tasks").status_code == 200, what="tasks ready")
    bed.enqueue("triage", items(10))
    daemon.wait_for(lambda: jobs_of(daemon, "triage").get("done") == 10, what="10 jobs done")
    metrics = daemon.get("/metrics").text
    assert 'reconciler_jobs_finished_total{result="done"} 10.0' in metrics
    # the fake answers every call with 42 prompt and 9 completion tokens
    for kind, count in (("prompt", 420), ("completion", 90)):
        labels = f'kind="{kind}",model="llama3.1:8b",provider="local",task="triage"'
        assert f"reconciler_model_tokens_total{{{labels}}} {count}.0" in metrics
    assert {(r["status"], r["provider"]) for r in bed.rows().values()} == {("done", "local")}

    bed.fake.behaviours["local"].hang = True  # calls are accepted and never answered
    bed.enqueue("triage", items(6, "late"))
    daemon.wait_for(lambda: len(bed.chats("local")) >= 14, what="4 more calls in flight")
    assert jobs_of(daemon, "triage").get("leased") == 6
    assert daemon.stop(signal.SIGTERM) == 0
    assert "gave 6 leased job(s) back to the queue" in daemon.log()
    assert "Traceback" not in daemon.log()
    late = [r for k, r in bed.rows().items() if k.startswith("late")]
    assert {(r["status"], r["attempts"], r["lease_owner"]) for r in late} == {("queued", 0, None)}
