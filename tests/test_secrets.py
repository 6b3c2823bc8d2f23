"""A secret's value never leaves the environment: not in output, files, nor the database.

The commands run as real processes with the secret planted in their environment, as a user
runs them; then every output, every file written and every table of the database is searched.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, inspect, text

from tests.builders import PROVIDERS, ROUTES
from tests.conftest import Result, run_reconciler
from tests.db_inspect import url_of

SECRETS = PROVIDERS.replace(
    "headers: {X-Team: news}", "headers: {X-Team: news, Authorization: {env: OPENROUTER_API_KEY}}"
)


def secret_env(secret: str) -> dict[str, str]:
    return {"OPENROUTER_API_KEY": secret}


@pytest.fixture
def planted() -> str:
    return f"sk-or-v1-planted-{uuid.uuid4().hex}"


def files_under(root: Path) -> Iterator[Path]:
    return (p for p in root.rglob("*") if p.is_file())


def table_dump(engine: Engine) -> str:
    """Every row of every table, as text."""
    lines = []
    with engine.connect() as conn:
        for table in sorted(inspect(conn).get_table_names()):
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                lines.append(f"{table}: {tuple(row)!r}")
    return "\n".join(lines)


def assert_nowhere(secret: str, results: list[Result], root: Path) -> None:
    for result in results:
        assert secret not in result.stdout and secret not in result.stderr
        assert "Traceback" not in result.output
    for path in files_under(root):  # config, plan file, export, SQLite database and its WAL
        assert secret.encode() not in path.read_bytes(), path


def test_validate_never_shows_a_secret_value(
    planted: str,
    cli: Callable[..., Result],
    write_config: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = write_config({"providers.yaml": SECRETS, "routes.yaml": ROUTES})
    results = [run_reconciler("-v", "validate", config, "--check-env", env=secret_env(planted))]
    monkeypatch.setenv("OPENROUTER_API_KEY", planted)
    results += [
        cli("validate", config, "--check-env", "--format", "json"),
        cli("validate", config, "--check-env", "--format", "github"),
    ]
    assert [r.code for r in results] == [0, 0, 0], [r.output for r in results]
    assert_nowhere(planted, results, tmp_path)


def test_plan_apply_export_and_history_never_show_or_store_a_secret_value(
    planted: str,
    cli: Callable[..., Result],
    engine: Engine,
    write_config: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = write_config({"providers.yaml": SECRETS, "routes.yaml": ROUTES})
    env = {**secret_env(planted), "RECONCILER_DATABASE_URL": url_of(engine)}
    saved, exported = tmp_path / "plan.json", tmp_path / "exported"
    # Stages run one after the other; the commands of a stage run side by side.
    stages: list[list[tuple[str | Path, ...]]] = [
        [
            ("--config", config, "plan", "--out", saved),
            ("--config", config, "plan", "--format", "json"),
        ],
        [("-v", "--log-format", "json", "apply", saved)],
        [("export", "--out", exported), ("history", "--format", "json")],
    ]
    results = []
    with ThreadPoolExecutor(max_workers=3) as pool:
        for stage in stages:
            results += list(pool.map(lambda args: run_reconciler(*args, env=env), stage))
    assert [r.code for r in results] == [0] * len(results), [r.output for r in results]
    for name, value in env.items():  # and the text history, in this process
        monkeypatch.setenv(name, value)
    results.append(cli("history"))
    text_plan, json_plan, applied, _, history_json, history = results

    # The reference is shown in its place.
    assert "config.endpoint.api_key: {env: OPENROUTER_API_KEY}" in text_plan.stdout
    assert "headers.Authorization: {env: OPENROUTER_API_KEY}" in applied.stdout
    openrouter = next(
        a for a in json.loads(json_plan.stdout)["actions"] if a["key"] == "openrouter"
    )
    assert openrouter["essence"]["config"]["endpoint"]["api_key"] == {"env": "OPENROUTER_API_KEY"}
    assert json.loads(saved.read_text()) == json.loads(json_plan.stdout)
    exported_doc = yaml.safe_load((exported / "providers.yaml").read_text())
    endpoint = exported_doc["providers"]["local-ollama"]["endpoint"]
    assert endpoint["headers"]["Authorization"] == {"env": "OPENROUTER_API_KEY"}
    assert "OPENROUTER_API_KEY" in history_json.stdout and "generation 1" in history.stdout

    assert_nowhere(planted, results, tmp_path)
    dump = table_dump(engine)
    assert "OPENROUTER_API_KEY" in dump
    assert planted not in dump
