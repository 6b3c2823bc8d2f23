"""`reconciler results` and `GET /api/v1/results`: the answers read back in text, JSON, JSON lines
and CSV, streamed in keyset pages, with hostile text made harmless. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event

from reconciler.adapters.db import queue_reads
from reconciler.adapters.db.engine import make_engine
from reconciler.daemon.metrics import Metrics
from reconciler.daemon.state import DaemonState
from reconciler.daemon.web import create_app, host_policy
from tests.builders import items
from tests.conftest import Result
from tests.fakeprovider import FakeServer, answering
from tests.scoring_bed import Bed, put_jobs, set_up_bed
from tests.scoring_worker import empty_queue, migrated_database

pytestmark = pytest.mark.timeout(120)

CSV_HEADER = [
    "task", "item_id", "status", "score", "rationale", "answer", "provider", "model",
    "latency_ms", "prompt_tokens", "completion_tokens", "attempts", "finished_at", "error",
]  # fmt: skip


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    admin = request.getfixturevalue("postgres_admin") if request.param == "postgresql" else None
    with migrated_database(request.param, admin, tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture
def url(database: str) -> str:
    empty_queue(database)
    return database


@pytest.fixture
def run(url: str, cli: Callable[..., Result]) -> Callable[..., Result]:
    def reconciler(*args: str | Path) -> Result:
        return cli("--database-url", url, *args)

    return reconciler


@pytest.fixture
def bed(url: str, fake: FakeServer, tmp_path: Path, cli: Callable[..., Result]) -> Bed:
    """The fake providers and routes of tests/test_scoring.py, on this module's database."""
    return set_up_bed(url, fake, tmp_path, cli)


def ten_jobs(url: str) -> datetime:
    """Seven done and three dead jobs of `scoring`, finished a minute apart until 8 minutes ago,
    and one queued; returns the moment they are counted back from."""
    now = datetime.now(UTC)
    done = [{"item_id": f"d{i}", "finished_at": now - timedelta(minutes=20 - i)} for i in range(7)]
    dead = [
        {"item_id": f"x{i}", "status": "dead", "attempts": 5, "error": f"local/m: boom {i}",
         "finished_at": now - timedelta(minutes=10 - i)}
        for i in range(3)
    ]  # fmt: skip
    put_jobs(url, *done, *dead, {"item_id": "q", "status": "queued"})
    return now


class Selects:
    """The SELECT statements every engine runs on scoring_jobs while it is open."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __enter__(self) -> Selects:
        event.listen(Engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(Engine, "before_cursor_execute", self._record)

    def _record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM scoring_jobs" in statement:
            self.statements.append(" ".join(statement.split()))


# --- the formats -------------------------------------------------------------------------------


def test_results_show_each_answer_who_gave_it_its_cost_and_a_token_footer(bed: Bed) -> None:
    bed.enqueue("scoring", items(3))
    assert bed.drain("scoring").done == 3
    shown = bed.run("results", "scoring")
    assert shown.code == 0, shown.output
    header, *rows = shown.stdout.split("\n\n")[0].splitlines()
    assert header.split() == [
        "ITEM", "SCORE", "RATIONALE", "SERVED", "BY", "LATENCY", "TOKENS", "ATTEMPTS", "FINISHED",
    ]  # fmt: skip
    assert [r.split()[:4] for r in rows] == [
        [f"item-0{i}", "0.8", "clear", "and"] for i in range(3)
    ]
    assert all("local/llama3.1:8b" in r and "42+9" in r for r in rows)
    footer = shown.stdout.split("\n\n")[1]
    assert "3 result(s)." in footer
    assert "tokens: scoring local/llama3.1:8b: 3 job(s), 126 prompt + 27 completion" in footer


def test_json_nests_the_answer_and_sums_tokens_per_task_and_model(
    url: str, run: Callable[..., Result]
) -> None:
    ten_jobs(url)
    put_jobs(url, {"task": "triage", "item_id": "t", "model": "qwen2.5:7b", "prompt_tokens": 5})
    document = json.loads(run("results", "--status", "all", "--format", "json").stdout)
    assert document["format_version"] == 1
    results = document["results"]
    assert [r["item_id"] for r in results] == [
        *(f"d{i}" for i in range(7)), *(f"x{i}" for i in range(3)), "t",
    ]  # fmt: skip
    first = results[0]
    assert first["answer"] == {"score": 0.5, "rationale": "fine"}
    assert (first["provider"], first["model"], first["latency_ms"]) == (
        "local",
        "llama3.1:8b",
        12.5,
    )
    assert (first["prompt_tokens"], first["completion_tokens"], first["attempts"]) == (42, 9, 1)
    assert datetime.fromisoformat(first["finished_at"]).tzinfo is not None
    assert results[7]["error"] == "local/m: boom 0" and results[7]["answer"] is None
    assert document["summary"] == {
        "count": 11,
        "tokens": [
            {"task": "scoring", "provider": "local", "model": "llama3.1:8b", "jobs": 7,
             "prompt_tokens": 294, "completion_tokens": 63},
            {"task": "triage", "provider": "local", "model": "qwen2.5:7b", "jobs": 1,
             "prompt_tokens": 5, "completion_tokens": 9},
        ],
    }  # fmt: skip


def test_jsonl_writes_one_result_a_line_and_dead_ones_with_their_error(
    url: str, run: Callable[..., Result]
) -> None:
    ten_jobs(url)
    dead = run("results", "scoring", "--status", "dead", "--format", "jsonl")
    assert dead.code == 0, dead.output
    lines = [json.loads(line) for line in dead.stdout.splitlines()]
    assert [(r["item_id"], r["status"], r["error"]) for r in lines] == [
        (f"x{i}", "dead", f"local/m: boom {i}") for i in range(3)
    ]
    done = run("results", "scoring", "--format", "jsonl")
    assert [json.loads(x)["item_id"] for x in done.stdout.splitlines()] == [
        f"d{i}" for i in range(7)
    ]


def test_csv_flattens_the_schema_fields_and_keeps_the_rest_in_an_answer_column(
    url: str, run: Callable[..., Result]
) -> None:
    put_jobs(
        url,
        {"item_id": "a", "result": {"score": 0.5, "rationale": "ok", "extra": [1, 2]}},
        {"item_id": "b", "status": "dead", "error": "local/m: gone"},
    )
    shown = run("results", "scoring", "--status", "all", "--format", "csv")
    assert shown.code == 0, shown.output
    header, first, second = list(csv.reader(io.StringIO(shown.stdout)))
    assert header == CSV_HEADER
    row = dict(zip(header, first, strict=True))
    assert (row["item_id"], row["score"], row["rationale"]) == ("a", "0.5", "ok")
    assert json.loads(row["answer"]) == {"extra": [1, 2]}
    assert (row["provider"], row["latency_ms"], row["prompt_tokens"]) == ("local", "12.5", "42")
    dead = dict(zip(header, second, strict=True))
    assert (dead["status"], dead["score"], dead["error"]) == ("dead", "", "local/m: gone")


def test_csv_and_text_escape_control_characters_and_defuse_formulas(
    url: str, run: Callable[..., Result]
) -> None:
    put_jobs(
        url,
        {"item_id": "=cmd|' /C calc'!A0", "result": {"score": 0.1, "rationale": "@SUM(1+1)"}},
        {"item_id": "b", "result": {"score": 0.2, "rationale": "two\nlines\x1b[31m red\u202e"}},
        {"item_id": "c", "result": {"score": 0.3, "rationale": "-2+3"}},
    )
    as_csv = run("results", "scoring", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert rows[0]["item_id"] == "'=cmd|' /C calc'!A0"
    assert rows[0]["rationale"] == "'@SUM(1+1)"
    assert rows[1]["rationale"] == "two\\nlines\\x1b[31m red\\u202e"
    assert rows[2]["rationale"] == "'-2+3"
    assert rows[0]["score"] == "0.1"  # numbers are no formulas
    as_text = run("results", "scoring")
    for output in (as_csv.stdout, as_text.stdout):
        assert "\x1b" not in output and "\u202e" not in output
    assert "two\\nlines\\x1b[31m" in as_text.stdout
    assert len(as_text.stdout.split("\n\n")[0].splitlines()) == 4


def test_the_csv_columns_follow_the_routes_output_schema(bed: Bed) -> None:
    bed.fake.behaviours["local"].chat = answering(content=json.dumps({"label": "ham"}))
    bed.enqueue("labelling", items(2))
    assert bed.drain("labelling").done == 2
    shown = bed.run("results", "labelling", "--format", "csv")
    header, *rows = list(csv.reader(io.StringIO(shown.stdout)))
    assert header[:5] == ["task", "item_id", "status", "label", "answer"]
    assert [r[3:5] for r in rows] == [["ham", ""], ["ham", ""]]


# --- filters, files and pages ------------------------------------------------------------------


def test_since_keeps_what_finished_since_a_duration_or_a_time(
    url: str, run: Callable[..., Result]
) -> None:
    now = ten_jobs(url)

    def since(value: str) -> list[str]:
        shown = run("results", "--since", value, "--status", "all", "--format", "jsonl")
        assert shown.code == 0, shown.output
        return [json.loads(line)["item_id"] for line in shown.stdout.splitlines()]

    assert since("15m30s") == ["d5", "d6", "x0", "x1", "x2"]
    moment = now - timedelta(minutes=9, seconds=30)
    assert since(moment.isoformat()) == ["x1", "x2"]
    assert since(moment.replace(tzinfo=None).isoformat()) == ["x1", "x2"]  # read as UTC
    refused = run("results", "--since", "last tuesday")
    assert refused.code == 1
    assert "--since 'last tuesday': write an ISO time" in refused.stderr


def test_out_writes_the_results_to_a_file(
    url: str, run: Callable[..., Result], tmp_path: Path
) -> None:
    ten_jobs(url)
    target = tmp_path / "results.csv"
    shown = run("results", "scoring", "--format", "csv", "--out", target)
    assert shown.code == 0, shown.output
    assert f"7 result(s) written to {target}." in shown.stdout
    written = target.read_bytes().decode("utf-8")
    assert written.startswith("task,item_id,status,score,rationale,answer,")
    assert len(list(csv.reader(io.StringIO(written, newline="")))) == 8
    missing = run("results", "--out", tmp_path / "nowhere" / "r.csv")
    assert missing.code == 1 and "cannot write" in missing.stderr


def test_nothing_finished_says_so(url: str, run: Callable[..., Result]) -> None:
    put_jobs(url, {"item_id": "q", "status": "queued"})
    assert run("results").stdout == "No done jobs.\n"
    assert json.loads(run("results", "--format", "json").stdout)["results"] == []


def test_results_are_read_in_keyset_pages_never_in_one_unbounded_select(
    url: str, run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    put_jobs(url, *({"item_id": f"i{n:02d}"} for n in reversed(range(20))))  # ids run backwards
    put_jobs(url, *({"task": "triage", "item_id": f"t{n}"} for n in range(3)))
    monkeypatch.setattr(queue_reads, "RESULTS_PAGE", 7)
    with Selects() as selects:
        one = run("results", "scoring", "--format", "jsonl")
    assert [json.loads(x)["item_id"] for x in one.stdout.splitlines()] == [
        f"i{n:02d}" for n in range(20)
    ]
    reads = [s for s in selects.statements if "ORDER BY" in s]
    assert len(reads) == 3  # 7 + 7 + 6
    assert all("ORDER BY scoring_jobs.item_id LIMIT " in s for s in reads)
    assert "scoring_jobs.item_id >" not in reads[0]
    assert all("scoring_jobs.item_id >" in s for s in reads[1:])
    with Selects() as selects:
        every = run("results", "--format", "jsonl")
    shown = [(r["task"], r["item_id"]) for r in map(json.loads, every.stdout.splitlines())]
    assert shown == [
        *(("scoring", f"i{n:02d}") for n in range(20)),
        *(("triage", f"t{n}") for n in range(3)),
    ]
    reads = [s for s in selects.statements if "ORDER BY" in s]
    assert len(reads) == 4  # 7 + 7 + 7 + 2
    assert all("ORDER BY scoring_jobs.task, scoring_jobs.item_id LIMIT " in s for s in reads)
    assert all("(scoring_jobs.task, scoring_jobs.item_id) >" in s for s in reads[1:])


def test_a_thousand_rows_and_more_take_three_pages_of_the_default_size(
    url: str, run: Callable[..., Result]
) -> None:
    put_jobs(url, *({"item_id": f"i{n:04d}"} for n in range(2_500)))
    with Selects() as selects:
        shown = run("results", "--format", "jsonl")
    assert len(shown.stdout.splitlines()) == 2_500
    assert len([s for s in selects.statements if "ORDER BY" in s]) == 3


# --- the API -----------------------------------------------------------------------------------


class Api:
    """The daemon's HTTP app over this module's database, asked in this process."""

    def __init__(self, engine: Engine) -> None:
        state = DaemonState(config_dir="config", database="test")
        self.app = create_app(engine, state, Metrics(), host_policy("127.0.0.1", ()))

    def get(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        async def run() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
                return await c.get(path, params=params)

        return asyncio.run(run())


@pytest.fixture
def api(url: str) -> Iterator[Api]:
    engine = make_engine(url)
    yield Api(engine)
    engine.dispose()


def test_the_api_pages_results_by_an_opaque_cursor(url: str, api: Api) -> None:
    ten_jobs(url)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"task": "scoring", "status": "all", "limit": 4}
        if cursor:
            params["after"] = cursor
        page = api.get("/api/v1/results", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [r["item_id"] for r in body["results"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert seen == [*(f"d{i}" for i in range(7)), *(f"x{i}" for i in range(3))]
    assert pages == 3
    first = api.get("/api/v1/results", params={"limit": 1}).json()["results"][0]
    assert first["answer"] == {"score": 0.5, "rationale": "fine"}
    assert (first["provider"], first["prompt_tokens"], first["error"]) == ("local", 42, None)
    dead = api.get("/api/v1/results", params={"status": "dead"}).json()
    assert [r["error"] for r in dead["results"]] == [f"local/m: boom {i}" for i in range(3)]


def test_the_api_pages_across_tasks_and_refuses_a_cursor_of_another_task(
    url: str, api: Api
) -> None:
    ten_jobs(url)
    put_jobs(url, *({"task": "triage", "item_id": f"t{n}"} for n in range(3)))
    first = api.get("/api/v1/results", params={"limit": 6}).json()
    second = api.get("/api/v1/results", params={"limit": 6, "after": first["next"]}).json()
    assert [r["item_id"] for r in second["results"]] == ["d6", "t0", "t1", "t2"]
    assert second["next"] is None
    mixed = api.get("/api/v1/results", params={"task": "triage", "after": first["next"]})
    assert mixed.status_code == 400
    assert "a cursor of another task" in mixed.json()["detail"]


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"limit": 0}, 422),
        ({"limit": 1001}, 422),
        ({"status": "queued"}, 422),
        ({"after": "not-a-cursor"}, 400),
        ({"after": "WyJ4IiwxXQ"}, 400),  # ["x",1]: not a task and an item id
        ({"after": "x" * 201}, 422),
    ],
    ids=["limit-0", "limit-1001", "queued", "garbage", "not-an-item", "too-long"],
)
def test_the_api_refuses_a_bad_limit_status_or_cursor(
    api: Api, params: dict[str, Any], status: int
) -> None:
    assert api.get("/api/v1/results", params=params).status_code == status
