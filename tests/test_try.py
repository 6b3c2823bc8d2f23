"""`reconciler try`, and how every call asks a route, for `try` and the worker alike: fallbacks in
order, an answer that breaks the schema asked again once with what was wrong, and output tokens
capped unless the route says otherwise. On SQLite and PostgreSQL, against fake providers.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.scoring import DEFAULT_MAX_OUTPUT_TOKENS, DEFAULT_OUTPUT_SCHEMA
from tests.builders import items
from tests.conftest import Result
from tests.fakeprovider import (
    Behaviour,
    Calls,
    FakeServer,
    answering,
    failing,
)
from tests.scoring_bed import FAST, Bed, set_up_bed
from tests.scoring_worker import empty_queue, job_rows, migrated_database

pytestmark = pytest.mark.timeout(120)

VALID = json.dumps({"score": 0.9, "rationale": "right"})
TOO_HIGH = json.dumps({"score": 100, "rationale": "off the scale"})
TOO_HIGH_ERROR = "100 is greater than the maximum of 1"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    admin = request.getfixturevalue("postgres_admin") if request.param == "postgresql" else None
    with migrated_database(request.param, admin, tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture
def bed(database: str, fake: FakeServer, tmp_path: Path, cli: Callable[..., Result]) -> Bed:
    """The fake providers and routes of tests/test_scoring.py, on this module's database."""
    empty_queue(database)
    return set_up_bed(database, fake, tmp_path, cli)


class InTurn:
    """A chat handler giving these contents in turn, the last one for every later request."""

    def __init__(self, *contents: str) -> None:
        self.contents = contents
        self.bodies: list[Any] = []

    def __call__(self, b: Behaviour, path: str, body: Any) -> tuple[Any, ...]:
        content = self.contents[min(len(self.bodies), len(self.contents) - 1)]
        self.bodies.append(body)
        return answering(content=content)(b, path, body)


# --- try ---------------------------------------------------------------------------------------


def test_try_prints_the_answer_who_gave_it_latency_and_tokens_and_stores_nothing(
    bed: Bed,
) -> None:
    result = bed.run("try", "scoring", "The Eiffel Tower is in Paris.")
    assert result.code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["score", "0.8"]
    assert lines[1].split(None, 1) == ["rationale", "clear and accurate"]
    assert lines[2].startswith("answered by local/llama3.1:8b in ")
    assert lines[2].endswith(" ms; tokens: 42 prompt + 9 completion")
    assert job_rows(bed.url) == []
    (sent,) = bed.chats("local")
    assert sent["messages"][-1] == {"role": "user", "content": "The Eiffel Tower is in Paris."}


def test_try_sends_exactly_what_the_worker_sends(bed: Bed) -> None:
    bed.fake.behaviours["local"].chat = answering(content=json.dumps({"label": "ham"}))
    tried = bed.run("try", "labelling", "item number 0")
    assert tried.code == 0, tried.output
    assert tried.stdout.splitlines()[0].split() == ["label", "ham"]
    bed.enqueue("labelling", items(1))
    assert bed.drain("labelling").done == 1
    by_try, by_worker = bed.chats("local")
    assert by_try == by_worker


def test_try_asks_the_fallbacks_in_order_and_says_who_answered(bed: Bed) -> None:
    bed.fake.behaviours["local"].chat = failing(500)
    result = bed.run("try", "scoring", "an item")
    assert result.code == 0, result.output
    assert "score      0.6" in result.stdout
    assert "answered by cloud/gpt-4o-mini in " in result.stdout
    assert len(bed.chats("local")) == len(bed.chats("cloud")) == 1


def test_try_exits_1_with_every_targets_failure_when_none_answers(bed: Bed) -> None:
    bed.fake.behaviours["local"].chat = failing(500)
    bed.fake.behaviours["cloud"].chat = answering(content="no JSON here")
    result = bed.run("try", "scoring", "an item")
    assert result.code == 1
    assert result.stdout == ""
    assert "error: no provider could answer for task scoring:" in result.stderr
    assert "\n  local/llama3.1:8b: server error 500" in result.stderr
    assert "\n  cloud/gpt-4o-mini: the answer: not valid JSON" in result.stderr
    assert "(also when asked again)" in result.stderr
    assert job_rows(bed.url) == []


def test_try_reads_the_item_from_stdin_and_prints_json(
    bed: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("from standard input\n"))
    result = bed.run("try", "extraction", "-", "--format", "json")
    assert result.code == 1  # the cloud fake answers a score, which the label schema refuses
    bed.fake.behaviours["cloud"].chat = answering(content=json.dumps({"label": "spam"}))
    monkeypatch.setattr("sys.stdin", io.StringIO("from standard input\n"))
    result = bed.run("try", "extraction", "-", "--format", "json")
    assert result.code == 0, result.output
    document = json.loads(result.stdout)
    assert document["answer"] == {"label": "spam"}
    assert (document["provider"], document["model"]) == ("cloud", "gpt-4o-mini")
    assert (document["prompt_tokens"], document["completion_tokens"]) == (42, 9)
    assert bed.chats("cloud")[-1]["messages"][-1]["content"] == "from standard input\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["try", "translation", "x"], "task translation has no route"),
        (["try", "scoring", ""], "the item's text: must not be empty"),
        (["try", "Bad!", "x"], "is not a valid name"),
    ],
    ids=["no-route", "empty-text", "bad-task"],
)
def test_try_refuses_what_it_cannot_send(bed: Bed, args: list[str], message: str) -> None:
    result = bed.run(*args)
    assert result.code == 1
    assert message in result.stderr
    assert not bed.chats("local") and not bed.chats("cloud")


# --- re-asking -----------------------------------------------------------------------------------


def test_an_answer_that_breaks_the_schema_is_asked_again_with_the_error_and_kept(
    bed: Bed,
) -> None:
    chat = InTurn(TOO_HIGH, VALID)
    bed.fake.behaviours["local"].chat = chat
    bed.enqueue("triage", items(1))
    stats = bed.drain("triage")
    assert (stats.done, stats.retried, stats.dead) == (1, 0, 0)
    (row,) = bed.rows().values()
    assert (row["status"], row["attempts"], row["result"]) == ("done", 1, json.loads(VALID))
    assert (row["prompt_tokens"], row["completion_tokens"]) == (84, 18)  # both requests
    first, second = chat.bodies
    assert second["messages"][: len(first["messages"])] == first["messages"]
    bad, again = second["messages"][len(first["messages"]) :]
    assert bad == {"role": "assistant", "content": TOO_HIGH}
    assert again["role"] == "user"
    assert TOO_HIGH_ERROR in again["content"]
    assert "Answer again with JSON only" in again["content"]
    assert second["format"] == first["format"] == DEFAULT_OUTPUT_SCHEMA


def test_an_answer_that_always_breaks_the_schema_fails_each_attempt_after_two_requests(
    bed: Bed,
) -> None:
    calls = Calls(answering(content=TOO_HIGH))
    bed.fake.behaviours["local"].chat = calls
    bed.enqueue("triage", items(1))
    stats = bed.drain("triage", FAST)
    assert (stats.done, stats.retried, stats.dead) == (0, 1, 1)
    (row,) = bed.rows().values()
    assert (row["status"], row["attempts"]) == ("dead", FAST.max_attempts)
    assert (
        "local/llama3.1:8b: the answer does not match the output schema at score: "
        in (row["error"])
    )
    assert "(also when asked again)" in row["error"]
    assert len(bed.chats("local")) == 2 * FAST.max_attempts
    assert sum(calls.per_item.values()) == 2 * FAST.max_attempts


def test_try_asks_again_as_the_worker_does(bed: Bed) -> None:
    bed.fake.behaviours["local"].chat = InTurn("not JSON at all", VALID)
    result = bed.run("try", "triage", "an item")
    assert result.code == 0, result.output
    assert "score      0.9" in result.stdout
    assert "tokens: 84 prompt + 18 completion" in result.stdout


# --- output-token caps ---------------------------------------------------------------------------


CAPPED_ROUTES = """\
version: 1
routes:
  short:
    provider: local
    model: llama3.1:8b
    params: {num_predict: 64, temperature: 0}
  terse:
    provider: cloud
    model: gpt-4o-mini
    params: {max_tokens: 100}
  newer:
    provider: cloud
    model: gpt-4o-mini
    params: {max_completion_tokens: 50}
"""


def test_every_call_caps_its_output_tokens_unless_the_route_sets_the_cap(bed: Bed) -> None:
    (bed.directory / "capped.yaml").write_text(CAPPED_ROUTES, encoding="utf-8")
    applied = bed.run("apply")
    assert applied.code == 0, applied.output
    for task in ("triage", "scoring", "short", "terse", "newer"):
        bed.enqueue(task, items(1, task))
        assert bed.drain(task).done == 1, task
    bed.fake.behaviours["local"].chat = failing(500)
    assert bed.run("try", "scoring", "capped too").code == 0
    ollama = {body["messages"][-1]["content"]: body for body in bed.chats("local")}
    assert ollama["triage number 0"]["options"] == {"num_predict": DEFAULT_MAX_OUTPUT_TOKENS}
    assert ollama["short number 0"]["options"] == {"num_predict": 64, "temperature": 0}
    openai = {body["messages"][-1]["content"]: body for body in bed.chats("cloud")}
    assert openai["capped too"]["max_tokens"] == DEFAULT_MAX_OUTPUT_TOKENS
    assert openai["terse number 0"]["max_tokens"] == 100
    assert openai["newer number 0"]["max_completion_tokens"] == 50
    assert "max_tokens" not in openai["newer number 0"]
