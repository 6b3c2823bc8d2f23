"""The options of `run` and `db` that the README promises, as a user runs them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text

from reconciler.core.config import ConfigLoader
from tests.builders import provider_file, routes_file
from tests.conftest import Result, run_reconciler
from tests.daemon_harness import Daemons
from tests.fakeprovider import FakeModel, FakeServer, answering


def count(url: str, query: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(query)).scalar_one())
    finally:
        engine.dispose()


def test_run_once_with_http_off_reconciles_and_exits(
    write_config: Callable[..., Path], fake: FakeServer, sqlite_url: str
) -> None:
    url = fake.add("local", models=[FakeModel("llama3.1:8b")])
    directory = write_config({"providers.yaml": provider_file(url), "routes.yaml": routes_file()})
    args = ("--database-url", sqlite_url, "--config", directory)
    result = run_reconciler(*args, "run", "--once", "--migrate", "--http", "off")
    assert result.code == 0, result.output
    assert "applied generation 1" in result.stderr
    assert "status page" not in result.stderr
    assert count(sqlite_url, "SELECT count(*) FROM llm_task_routes") == 2
    assert count(sqlite_url, "SELECT count(*) FROM task_readiness") == 2


def test_run_with_poll_applies_an_edit(start_daemon: Daemons, sqlite_url: str) -> None:
    scene = start_daemon.on_fake(sqlite_url, "--poll")
    daemon, directory = scene.daemon, scene.directory
    (directory / "routes.yaml").write_text(routes_file("qwen2.5:7b"), encoding="utf-8")
    changes = daemon.wait_generation(2)["last_apply"]["changes"]
    assert [c.split(" (", 1)[0] for c in changes] == ["~ route extraction", "~ route scoring"]
    assert daemon.stop() == 0


def test_run_with_no_scoring_leaves_the_queue_alone(
    start_daemon: Daemons,
    fake: FakeServer,
    sqlite_url: str,
    cli: Callable[..., Result],
    tmp_path: Path,
) -> None:
    provider = {"models": [FakeModel("llama3.1:8b")], "chat": answering()}
    args = ("--no-scoring", "--probe-interval", "1")
    daemon = start_daemon.on_fake(sqlite_url, *args, provider=provider).daemon
    items = tmp_path / "items.jsonl"
    items.write_text('{"id": "1", "text": "score me"}\n', encoding="utf-8")
    assert cli("--database-url", sqlite_url, "enqueue", "scoring", str(items)).code == 0
    daemon.wait_for(lambda: daemon.get("/readyz/tasks").status_code == 200, what="ready tasks")
    time.sleep(2)  # a scoring worker polls every 0.5 s; none may take the job
    query = "SELECT count(*) FROM scoring_jobs WHERE status = 'queued'"
    assert count(sqlite_url, query) == 1
    assert not [r for r in fake.requests if r.path == "/api/chat"]
    assert daemon.stop() == 0


def test_db_downgrade_and_upgrade_from_the_command_line(
    cli: Callable[..., Result], sqlite_url: str
) -> None:
    assert cli("--database-url", sqlite_url, "db", "upgrade").code == 0
    down = cli("--database-url", sqlite_url, "db", "downgrade", "0002")
    assert down.code == 0, down.output
    current = cli("--database-url", sqlite_url, "db", "current")
    assert "0002" in current.stdout
    refused = cli("--database-url", sqlite_url, "status")
    assert refused.code == 1
    assert "run `reconciler db upgrade`" in refused.stderr
    assert cli("--database-url", sqlite_url, "db", "upgrade").code == 0
    assert cli("--database-url", sqlite_url, "db", "check").code == 0


def test_one_edit_in_a_hundred_files_re_parses_one_file() -> None:
    files = [
        (f"f{i:03}.yaml", f"version: 1\nroutes:\n  t{i}: {{provider: p, model: m}}\n".encode())
        for i in range(100)
    ]
    files.append(
        (
            "p.yaml",
            b"version: 1\nproviders:\n  p: {type: ollama, endpoint: {base_url: 'http://127.0.0.1:1'}}\n",
        )
    )
    loader = ConfigLoader()
    loader.load(files)
    assert loader.parsed_files == 101
    files[7] = ("f007.yaml", b"version: 1\nroutes:\n  t7: {provider: p, model: other}\n")
    state = loader.load(files)
    assert loader.parsed_files == 102
    assert state.routes["t7"].spec.model == "other"
    loader.load(files)
    assert loader.parsed_files == 102
