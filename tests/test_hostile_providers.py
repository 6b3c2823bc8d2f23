"""Providers that attack: one hostile mode per case, through the production code path.

A fake provider on 127.0.0.1 sends a decompression bomb, echoes the key it was sent, answers NaN,
nests its answer ten thousand deep, claims more tokens than a counter holds, sends a Retry-After
that is not a number or is a billion seconds, or lists model names with terminal escapes. Each
case fails safe: bounded memory, nothing secret kept or shown, a true message, the fallbacks tried,
attempts counted right. Scoring cases run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from reconciler.adapters.db.engine import make_engine
from reconciler.adapters.plugins import load_registry
from reconciler.adapters.providers.chat import parse_retry_after
from reconciler.adapters.providers.egress import StaticResolver, using_resolver
from reconciler.adapters.providers.probe import Target, probe_once
from reconciler.core.readiness import Reason
from reconciler.core.scoring import MAX_RETRY_AFTER_S
from reconciler.core.spec import OllamaProvider
from reconciler.service.scoring import ScoreStats, ScoringOptions, ScoringWorker
from tests.conftest import Result
from tests.fakeprovider import (
    OLLAMA,
    OPENAI,
    Behaviour,
    Calls,
    FakeModel,
    FakeServer,
    answering,
    failing,
)
from tests.scoring_worker import empty_queue, job_rows, migrated_database

pytestmark = pytest.mark.timeout(90)

SECRET = "sk-hostile-4b1d9e0c-never-kept"
LLAMA = FakeModel("llama3.1:8b", loaded=True)
FAST = ScoringOptions(max_attempts=3, backoff_base_s=0.01, backoff_cap_s=0.02, idle_poll_s=0.05)


# --- the decompression bomb ----------------------------------------------------------------------


def bomb(inflated_mib: int, layers: int) -> bytes:
    """`inflated_mib` MiB of zeros, gzipped `layers` times: a few KiB on the wire."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    data = b"".join(packer.compress(zeros) for _ in range(inflated_mib)) + packer.flush()
    for _ in range(layers - 1):
        data = gzip.compress(data, 9)
    return data


@pytest.fixture(scope="module")
def two_gib_bomb() -> bytes:
    return bomb(2048, layers=2)


def probe_one(url: str, env: dict[str, str] | None = None) -> Any:
    provider = OllamaProvider.model_validate(
        {"type": "ollama", "endpoint": {"base_url": url, "probe_timeout_s": 5}}
    )
    target = Target("p", provider, frozenset({"llama3.1:8b"}))
    return asyncio.run(probe_once([target], env=env or {}))["p"]


def test_a_gzip_bomb_is_stopped_at_the_cap_with_memory_bounded(
    fake: FakeServer, two_gib_bomb: bytes
) -> None:
    assert len(two_gib_bomb) < 64 * 1024
    url = fake.add("bomb", raw=(200, two_gib_bomb, {"content-encoding": "gzip, gzip"}))
    tracemalloc.start()
    try:
        report = probe_one(url)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.reason is Reason.bad_response
    assert "more than 4096 KiB once inflated" in report.detail
    assert peak < 64 * 1024 * 1024, f"the probe peaked at {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize(
    ("encoding", "message"),
    [
        ("gzip, gzip, gzip", "encoded 3 times over"),
        ("br", "encoded as 'br', which was not asked for"),
        ("gzip", "the gzip data is corrupt"),
    ],
)
def test_encodings_not_asked_for_stacked_or_corrupt_are_bad_responses(
    fake: FakeServer, encoding: str, message: str
) -> None:
    url = fake.add("enc", raw=(200, b"\x1f\x8bnot really gzip", {"content-encoding": encoding}))
    report = probe_one(url)
    assert report.reason is Reason.bad_response
    assert message in report.detail


def test_a_compressed_answer_within_the_cap_is_read(fake: FakeServer) -> None:
    url = fake.add("zipped", models=[LLAMA], gzip=True)
    report = probe_one(url)
    assert report.ok, report.detail
    assert "gzip" in fake.requests[-1].headers["accept-encoding"]


# --- model names and versions with terminal escapes --------------------------------------------


def test_model_names_with_escape_sequences_are_escaped_in_status_and_logs(
    fake: FakeServer,
    cli: Callable[..., Result],
    write_config: Callable[..., Path],
    tmp_path: Path,
) -> None:
    forged = "evil\x1b[31m\nERROR forged log line"
    url = fake.add("local", models=[FakeModel(forged)], version="0.6\x1b]0;owned\x07")
    directory = write_config(
        {
            "c.yaml": f"version: 1\nproviders:\n  local:\n    type: ollama\n"
            f"    endpoint: {{base_url: '{url}', probe_timeout_s: 2}}\n"
            "routes:\n  scoring: {provider: local, model: llama3.1:8b, required: true}\n"
        }
    )
    database = f"sqlite:///{tmp_path / 'r.db'}"
    assert cli("--database-url", database, "db", "upgrade").code == 0
    assert cli("--database-url", database, "--config", directory, "apply").code == 0
    # -vv: the command's debug log lines, which name what each probe saw, are in its output
    shown = cli("-vv", "--database-url", database, "--config", directory, "status", "--probe")
    as_json = cli("--database-url", database, "--config", directory, "status", "--probe",
                  "--format", "json")  # fmt: skip
    assert shown.code == 3, shown.output
    for output in (shown.output, as_json.output):
        assert "\x1b" not in output
        assert "\x07" not in output
        assert "\nERROR forged" not in output
    assert "evil\\x1b[31m\\nERROR forged log line" in shown.output


# --- scoring against hostile answers ---------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    admin = request.getfixturevalue("postgres_admin") if request.param == "postgresql" else None
    with migrated_database(request.param, admin, tmp_path_factory.mktemp("db")) as url:
        yield url


class Scoring:
    """A primary and a fallback provider, their routes applied, and a way to work the queue."""

    def __init__(self, url: str, fake: FakeServer, cli: Callable[..., Result], root: Path):
        self.url, self.fake, self.cli, self.root = url, fake, cli, root

    def apply(self, primary: str, fallback: str | None = None) -> None:
        fallbacks = "\n    fallbacks: [{provider: backup, model: gpt-4o-mini}]" if fallback else ""
        backup = (
            f"  backup:\n    type: openai_compatible\n"
            f"    endpoint: {{base_url: '{fallback}', api_key: {{env: HOSTILE_KEY}}}}\n"
            if fallback
            else ""
        )
        (self.root / "config").mkdir(exist_ok=True)
        primary_endpoint = f"{{base_url: '{primary}', api_key: {{env: HOSTILE_KEY}}, timeout_s: 5}}"
        (self.root / "config" / "c.yaml").write_text(
            "version: 1\nproviders:\n  local:\n    type: ollama\n"
            f"    endpoint: {primary_endpoint}\n{backup}"
            f"routes:\n  scoring:\n    provider: local\n    model: llama3.1:8b{fallbacks}\n",
            encoding="utf-8",
        )
        result = self.cli("--database-url", self.url, "--config", self.root / "config", "apply")
        assert result.code == 0, result.output

    def enqueue(self, *ids: str) -> None:
        source = self.root / "items.jsonl"
        source.write_text("".join(json.dumps({"id": i, "text": i}) + "\n" for i in ids))
        result = self.cli("--database-url", self.url, "enqueue", "scoring", source)
        assert result.code == 0, result.output

    def drain(self, options: ScoringOptions = FAST, **worker: Any) -> ScoreStats:
        engine = make_engine(self.url)
        try:
            env = {"HOSTILE_KEY": SECRET}
            scorer = ScoringWorker(engine, load_registry(), env=env, options=options, **worker)
            return asyncio.run(scorer.drain({"scoring"}))
        finally:
            engine.dispose()

    def rows(self) -> dict[str, dict[str, Any]]:
        return {r["item_id"]: r for r in job_rows(self.url)}

    def dump(self) -> str:
        engine = make_engine(self.url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(text("SELECT * FROM scoring_jobs")).all()
        finally:
            engine.dispose()
        return repr(rows)


@pytest.fixture
def scoring(database: str, fake: FakeServer, cli: Callable[..., Result], tmp_path: Path) -> Scoring:
    empty_queue(database)
    return Scoring(database, fake, cli, tmp_path)


def ollama_answer(content: str, **extra: Any) -> bytes:
    body = {"model": "llama3.1:8b", "message": {"role": "assistant", "content": content}}
    return json.dumps({**body, "done": True, **extra}).encode()


def raw_chat(status: int, body: bytes, headers: dict[str, str] | None = None) -> Any:
    def chat(b: Behaviour, path: str, request: Any) -> tuple[int, bytes, dict[str, str]]:
        return status, body, dict(headers or {})

    return chat


def test_a_scoring_call_to_a_name_that_resolves_to_metadata_is_never_sent(
    scoring: Scoring,
) -> None:
    scoring.apply("http://models.corp.test:11434")
    scoring.enqueue("a")
    with using_resolver(StaticResolver({"models.corp.test": ["169.254.169.254"]})):
        stats = scoring.drain()
    assert stats.dead == 1
    error = scoring.rows()["a"]["error"]
    assert "refused to connect: models.corp.test resolves to 169.254.169.254" in error


@pytest.mark.parametrize("status", [401, 500])
def test_a_key_the_provider_echoes_back_is_never_stored_logged_or_shown(
    scoring: Scoring, fake: FakeServer, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    echo = {"error": f"bad request, you sent Authorization: Bearer {SECRET}"}
    url = fake.add("local", models=[LLAMA], chat=failing(status, echo))
    scoring.apply(url)
    scoring.enqueue("a")
    with caplog.at_level(logging.DEBUG, logger="reconciler"):
        scoring.drain()
    jobs = [
        scoring.cli("--database-url", scoring.url, "jobs", *f) for f in ((), ("--format", "json"))
    ]
    assert fake.requests[-1].headers["authorization"] == f"Bearer {SECRET}"
    for seen in (scoring.dump(), caplog.text, *(j.output for j in jobs)):
        assert SECRET not in seen
    assert "[redacted]" in scoring.rows()["a"]["error"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"score": NaN, "rationale": "x"}', "NaN is not a JSON number"),
        ('{"score": Infinity, "rationale": "x"}', "Infinity is not a JSON number"),
        ('{"score": 1e999, "rationale": "x"}', "a number is too large"),
        ('{"score": 0.5, "rationale": "x", "n": 1' + "0" * 40 + "}", "digits is out of range"),
    ],
    ids=["nan", "infinity", "overflow", "huge-int"],
)
def test_an_answer_that_is_not_strict_json_is_never_a_score(
    scoring: Scoring, fake: FakeServer, content: str, reason: str
) -> None:
    calls = Calls(answering(content=content))
    url = fake.add("local", models=[LLAMA], chat=calls)
    scoring.apply(url)
    scoring.enqueue("a")
    stats = scoring.drain()
    row = scoring.rows()["a"]
    assert (stats.done, stats.dead) == (0, 1)
    assert row["status"] == "dead"
    assert row["result"] is None
    assert reason in row["error"]
    assert "leases expired" not in row["error"]
    assert calls.per_item["a"] == FAST.max_attempts


def test_a_deeply_nested_answer_fails_that_target_and_the_fallback_answers(
    scoring: Scoring, fake: FakeServer
) -> None:
    nested = b'{"model": "x", "message": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    primary = fake.add("local", models=[LLAMA], chat=raw_chat(200, nested))
    backup = fake.add("backup", kind=OPENAI, models=[FakeModel("gpt-4o-mini")], chat=answering())
    scoring.apply(primary, backup)
    scoring.enqueue("a")
    stats = scoring.drain()
    row = scoring.rows()["a"]
    assert stats.done == 1, row
    assert row["provider"] == "backup"


def test_a_retry_after_that_is_not_a_number_is_no_advice_and_the_fallback_is_tried(
    scoring: Scoring, fake: FakeServer
) -> None:
    primary = fake.add(
        "local", models=[LLAMA], chat=failing(429, {"error": "slow down"}, {"retry-after": "²"})
    )
    backup = fake.add("backup", kind=OPENAI, models=[FakeModel("gpt-4o-mini")], chat=answering())
    scoring.apply(primary, backup)
    scoring.enqueue("a")
    stats = scoring.drain()
    assert (stats.done, stats.retried, stats.dead) == (1, 0, 0)
    assert scoring.rows()["a"]["provider"] == "backup"


def test_token_counts_past_any_counter_keep_the_valid_answer(
    scoring: Scoring, fake: FakeServer
) -> None:
    content = json.dumps({"score": 0.7, "rationale": "fine"})
    body = ollama_answer(content).replace(
        b'"done": true',
        b'"done": true, "prompt_eval_count": 99999999999999999999999, '
        b'"eval_count": 9223372036854775807',
    )
    url = fake.add("local", models=[LLAMA], chat=raw_chat(200, body))
    scoring.apply(url)
    scoring.enqueue("a")
    stats = scoring.drain()
    row = scoring.rows()["a"]
    assert stats.done == 1, row
    assert row["result"] == {"score": 0.7, "rationale": "fine"}
    assert (row["prompt_tokens"], row["completion_tokens"]) == (None, None)


def test_a_provider_that_always_fails_costs_exactly_the_attempts_allowed(
    scoring: Scoring, fake: FakeServer
) -> None:
    calls = Calls(failing(500))
    url = fake.add("local", models=[LLAMA], chat=calls)
    scoring.apply(url)
    scoring.enqueue("a")
    stats = scoring.drain()
    row = scoring.rows()["a"]
    assert calls.per_item["a"] == FAST.max_attempts
    assert stats.dead == 1
    assert row["attempts"] == FAST.max_attempts
    assert "server error 500" in row["error"]


def test_a_retry_after_of_a_billion_seconds_is_capped_and_the_wait_is_said(
    scoring: Scoring, fake: FakeServer
) -> None:
    assert parse_retry_after("1000000000") == MAX_RETRY_AFTER_S
    assert parse_retry_after("Wed, 21 Oct 2999 07:28:00 GMT") == MAX_RETRY_AFTER_S
    assert parse_retry_after("-5") is None
    url = fake.add("local", models=[LLAMA], chat=failing(429, None, {"retry-after": "1000000000"}))
    scoring.apply(url)
    scoring.enqueue("a")
    waits: list[tuple[float, int]] = []

    async def drain_until_told() -> None:
        engine = make_engine(scoring.url)
        worker = ScoringWorker(
            engine, load_registry(), env={"HOSTILE_KEY": SECRET}, options=FAST,
            on_wait=lambda seconds, count: waits.append((seconds, count)),
        )  # fmt: skip
        task = asyncio.create_task(worker.drain({"scoring"}))
        try:
            for _ in range(200):
                if waits:
                    return
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            engine.dispose()

    asyncio.run(drain_until_told())
    assert waits, "the drain never said what it waits for"
    seconds, count = waits[0]
    assert MAX_RETRY_AFTER_S - 10 < seconds <= MAX_RETRY_AFTER_S
    assert count == 1


def test_an_unexpected_error_in_a_call_is_a_true_failure_and_the_fallback_answers(
    scoring: Scoring, fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary = fake.add("local", models=[LLAMA], chat=answering())
    backup = fake.add("backup", kind=OPENAI, models=[FakeModel("gpt-4o-mini")], chat=answering())
    scoring.apply(primary, backup)
    scoring.enqueue("a")
    from reconciler.service import ask as worker_module

    real_chat = worker_module.chat

    async def broken_for_ollama(client: Any, spec: Any, *args: Any) -> Any:
        if spec.type == OLLAMA:
            raise KeyError("surprise")
        return await real_chat(client, spec, *args)

    monkeypatch.setattr(worker_module, "chat", broken_for_ollama)
    stats = scoring.drain()
    row = scoring.rows()["a"]
    assert stats.done == 1, row
    assert row["provider"] == "backup"


def test_score_alone_works_the_queue_once_and_exits(
    scoring: Scoring, fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTILE_KEY", SECRET)
    url = fake.add("local", models=[LLAMA], chat=answering())
    scoring.apply(url)
    scoring.enqueue("a", "b")
    result = scoring.cli("--database-url", scoring.url, "score")
    assert result.code == 0, result.output
    assert "scored 2, retried 0, dead 0" in result.stdout
