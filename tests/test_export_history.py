"""`reconciler export` (adopting a database, legacy ones included) and `reconciler history`."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

import yaml
from sqlalchemy import Engine, select

from reconciler.adapters.db.engine import make_engine
from reconciler.adapters.db.tables import ollama_settings, providers, routes
from tests.builders import EXAMPLE, PROVIDERS, ROUTES
from tests.conftest import Result
from tests.db_inspect import (
    recording_writes,
    rows,
    snapshot,
    sql,
    url_of,
)

Run = Callable[..., Result]


def test_export_of_an_applied_database_validates_and_applies_back_with_no_changes(
    cli: Run, engine: Engine, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    url = url_of(engine)
    protected = PROVIDERS.replace("    keep_alive: 5m", "    keep_alive: 10m\n    protect: true")
    config = write_config({"providers.yaml": protected, "routes.yaml": ROUTES})
    assert cli("--database-url", url, "--config", config, "apply").code == 0
    exported = tmp_path / "exported"
    result = cli("--database-url", url, "export", "--out", exported)
    assert result.code == 0, result.output
    assert sorted(p.name for p in exported.iterdir()) == ["providers.yaml", "routes.yaml"]
    document = yaml.safe_load((exported / "providers.yaml").read_text())
    openrouter = document["providers"]["openrouter"]
    assert openrouter["endpoint"]["api_key"] == {"env": "OPENROUTER_API_KEY"}
    assert document["providers"]["local-ollama"]["protect"] is True
    assert document["providers"]["local-ollama"]["keep_alive"] == "10m"

    valid = cli("validate", exported)
    assert valid.code == 0, valid.output
    plan = cli("--database-url", url, "--config", exported, "plan", "--detailed-exitcode")
    assert plan.code == 0, plan.output
    assert "Plan: 0 to create, 0 to update, 0 to delete, 4 unchanged." in plan.stdout
    before = snapshot(engine)
    with recording_writes() as writes:
        again = cli("--database-url", url, "--config", exported, "apply")
    assert again.code == 0, again.output
    assert writes == [] and snapshot(engine) == before


def test_a_legacy_database_is_backfilled_unmanaged_and_adopted_through_export(
    cli: Run, db_url: str, tmp_path: Path
) -> None:
    assert cli("--database-url", db_url, "db", "upgrade", "0001").code == 0
    engine = make_engine(db_url)
    try:
        sql(
            engine,
            "INSERT INTO ollama_settings (id, base_url, model, enabled, updated_at) VALUES "
            "(1, 'http://10.0.0.5:11434/', 'llama3.1:8b', true, '2025-03-01 12:00:00')",
        )
        upgraded = cli("--database-url", db_url, "db", "upgrade")
        assert upgraded.code == 0, upgraded.output
        provider = rows(engine, providers, "name")["ollama"]
        route = rows(engine, routes, "task")["scoring"]
        assert provider.managed_by != "config" and route.managed_by != "config"
        assert (route.provider, route.model) == ("ollama", "llama3.1:8b")

        exported = tmp_path / "exported"
        assert cli("--database-url", db_url, "export", "--out", exported).code == 0
        assert cli("validate", exported).code == 0
        plan = cli("--database-url", db_url, "--config", exported, "plan", "--format", "json")
        assert plan.code == 0, plan.output
        document = json.loads(plan.stdout)
        assert document["summary"] == {
            "create": 0,
            "update": 0,
            "delete": 0,
            "adopt": 2,
            "unchanged": 0,
        }
        assert [(a["op"], a["key"], a["changes"]) for a in document["actions"]] == [
            ("adopt", "ollama", []),
            ("adopt", "scoring", []),
        ]
        applied = cli("--database-url", db_url, "--config", exported, "apply")
        assert applied.code == 0, applied.output
        assert rows(engine, providers, "name")["ollama"].managed_by == "config"
        assert rows(engine, routes, "task")["scoring"].managed_by == "config"

        before = snapshot(engine)
        with recording_writes() as writes:
            again = cli("--database-url", db_url, "--config", exported, "apply")
        assert again.code == 0, again.output
        assert writes == [] and snapshot(engine) == before
        with engine.connect() as conn:  # the legacy table stays readable, as it was
            legacy = conn.execute(select(ollama_settings)).one()
        assert (legacy.base_url, legacy.model) == ("http://10.0.0.5:11434/", "llama3.1:8b")
    finally:
        engine.dispose()


def test_history_lists_revisions_newest_first_with_counts_digest_host_and_pid(
    cli: Run, engine: Engine, write_config: Callable[..., Path]
) -> None:
    url = url_of(engine)
    empty = cli("--database-url", url, "history")
    assert empty.code == 0 and "no revisions yet" in empty.stdout

    config = write_config(EXAMPLE)
    digests = []
    steps = [
        EXAMPLE,
        {"routes.yaml": ROUTES.replace("qwen2.5:7b", "qwen2.5:14b")},
        {"routes.yaml": ROUTES.replace("qwen2.5:7b", "qwen2.5:14b").split("  summarization:")[0]},
    ]
    for files in steps:
        write_config(files)
        plan = json.loads(
            cli("--database-url", url, "--config", config, "plan", "--format", "json").stdout
        )
        digests.append(plan["config_digest"])
        assert cli("--database-url", url, "--config", config, "apply").code == 0
    assert cli("--database-url", url, "--config", config, "apply").code == 0  # no-op: no revision

    text = cli("--database-url", url, "history")
    assert text.code == 0, text.output
    lines = text.stdout.strip().splitlines()
    assert [line.split()[1] for line in lines] == ["3", "2", "1"]
    host, pid = socket.gethostname(), os.getpid()
    for line, digest in zip(lines, reversed(digests), strict=True):
        assert f"@{host} pid {pid}" in line
        assert digest[:12] in line
    assert "Plan: 0 to create, 0 to update, 1 to delete, 3 unchanged." in lines[0]
    assert "Plan: 0 to create, 1 to update, 0 to delete, 3 unchanged." in lines[1]
    assert "Plan: 4 to create, 0 to update, 0 to delete, 0 unchanged." in lines[2]

    listed = json.loads(cli("--database-url", url, "history", "--format", "json").stdout)
    assert [r["generation"] for r in listed] == [3, 2, 1]
    counts = [(r["created"], r["updated"], r["deleted"], r["adopted"]) for r in listed]
    assert counts == [(0, 0, 1, 0), (0, 1, 0, 0), (4, 0, 0, 0)]
    assert [r["config_digest"] for r in listed] == digests[::-1]
    assert {(r["host"], r["pid"]) for r in listed} == {(host, pid)}
    assert all(r["applied_at"].endswith("+00:00") for r in listed)
    assert listed[0]["plan"]["actions"][0]["key"] == "summarization"

    limited = cli("--database-url", url, "history", "--limit", "2", "--format", "json")
    assert [r["generation"] for r in json.loads(limited.stdout)] == [3, 2]
    one = cli("--database-url", url, "history", "--limit", "1")
    assert one.stdout.strip().splitlines()[0].split()[1] == "3"
    assert len(one.stdout.strip().splitlines()) == 1
