"""Saved plans (`plan --out`, `apply PLAN`) through the command line, on SQLite and PostgreSQL:
applied exactly, refused as stale when the database changed, refused when corrupted or of another
version.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from reconciler.adapters.db.tables import revisions, routes
from tests.builders import EXAMPLE, ROUTES
from tests.cli_checks import Run
from tests.db_inspect import (
    insert_unmanaged_route,
    rows,
    snapshot,
    sql,
)


def test_apply_of_a_saved_plan_applies_exactly_that_plan(
    rc: Run, engine: Engine, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = write_config(EXAMPLE)
    assert rc(config, "apply").code == 0
    write_config({"routes.yaml": ROUTES.replace("qwen2.5:7b", "qwen2.5:14b")})
    saved = tmp_path / "plan.json"
    plan = rc(config, "plan", "--out", saved)
    assert plan.code == 0, plan.output
    assert f"reconciler apply {saved}" in plan.stdout
    # The files move on after the plan was made; the saved plan is what gets applied.
    write_config({"routes.yaml": ROUTES.replace("qwen2.5:7b", "qwen2.5:32b")})
    result = rc(None, "apply", saved)
    assert result.code == 0, result.output
    assert "Apply complete: generation 2." in result.stdout
    assert rows(engine, routes, "task")["summarization"].model == "qwen2.5:14b"
    with engine.connect() as conn:
        recorded = conn.execute(select(revisions.c.plan).where(revisions.c.generation == 2))
        assert recorded.scalar_one() == json.loads(saved.read_text())
    remaining = rc(config, "plan")
    assert 'model: "qwen2.5:14b" -> "qwen2.5:32b"' in remaining.stdout


def test_a_saved_plan_is_refused_as_stale_when_the_database_changed(
    rc: Run,
    engine: Engine,
    write_config: Callable[..., Path],
    writes: list[str],
    tmp_path: Path,
) -> None:
    config = write_config(EXAMPLE)
    assert rc(config, "apply").code == 0
    changes: list[Callable[[], object]] = [
        lambda: sql(engine, "UPDATE llm_task_routes SET model = 'x' WHERE task = 'scoring'"),
        lambda: insert_unmanaged_route(engine, "handmade", "local-ollama"),
        lambda: rc(config, "apply"),  # another apply in between
    ]
    for number, change in enumerate(changes):
        write_config({"routes.yaml": ROUTES.replace("qwen2.5:7b", f"qwen2.5:{number}b")})
        saved = tmp_path / f"plan-{number}.json"
        assert rc(config, "plan", "--out", saved).code == 0
        change()
        before = snapshot(engine)
        writes.clear()
        result = rc(None, "apply", saved)
        assert result.code == 1, (number, result.output)
        assert "stale" in result.stderr and "reconciler plan --out" in result.stderr
        assert "Traceback" not in result.output
        assert writes == [] and snapshot(engine) == before


def _edit(document: dict[str, Any], how: str) -> None:
    action = document["actions"][0]
    edits: dict[str, Callable[[], object]] = {
        "no-version": lambda: document.pop("format_version"),
        "version-2": lambda: document.update(format_version=2),
        "no-actions": lambda: document.pop("actions"),
        "unknown-op": lambda: action.update(op="explode"),
        "null-content": lambda: action.update(essence=None),
        "content-missing-fields": lambda: action["essence"].pop("provider"),
        "content-wrong-type": lambda: action["essence"].update(enabled="yes"),
        "update-of-an-unmanaged-row": lambda: action.update(key="handmade"),
        "delete-of-an-unmanaged-row": lambda: document["actions"].append(
            {**action, "op": "delete", "key": "handmade", "essence": None, "changes": []}
        ),
        "same-action-twice": lambda: document["actions"].append(action),
    }
    edits[how]()


def _damage(good: str, how: str) -> str:
    """The saved plan `good`, damaged or edited as `how` says."""
    if how == "truncated":
        return good[:200]
    if how == "not-json":
        return "\x00\x01 this is not a plan"
    if how == "a-list":
        return "[1, 2, 3]"
    document = json.loads(good)
    _edit(document, how)
    return json.dumps(document)


DAMAGES = [
    "truncated",
    "not-json",
    "a-list",
    "no-version",
    "version-2",
    "no-actions",
    "unknown-op",
    "null-content",
    "content-missing-fields",
    "content-wrong-type",
    "update-of-an-unmanaged-row",
    "delete-of-an-unmanaged-row",
    "same-action-twice",
]


def test_a_corrupted_or_wrong_version_plan_file_is_refused_with_a_clear_error(
    rc: Run,
    engine: Engine,
    write_config: Callable[..., Path],
    writes: list[str],
    tmp_path: Path,
) -> None:
    config = write_config(EXAMPLE)
    assert rc(config, "apply").code == 0
    insert_unmanaged_route(engine, "handmade", "local-ollama")
    write_config({"routes.yaml": ROUTES.replace("qwen2.5:7b", "qwen2.5:14b")})
    saved = tmp_path / "plan.json"
    assert rc(config, "plan", "--out", saved).code == 0
    good = saved.read_text()
    before = snapshot(engine)
    writes.clear()
    for how in DAMAGES:
        damaged = tmp_path / f"{how}.json"
        damaged.write_text(_damage(good, how))
        result = rc(None, "apply", damaged)
        assert result.code == 1, (how, result.output)
        assert "Traceback" not in result.output, how
        message = result.stderr
        assert message.startswith("error: ") and message.count("\n") == 1, (how, message)
        if how == "version-2":
            assert "format version 2" in message and "plan again" in message
        else:
            assert "plan" in message, (how, message)
    assert writes == [] and snapshot(engine) == before
    missing = rc(None, "apply", tmp_path / "nope.json")
    assert missing.code == 1 and "cannot read the plan" in missing.stderr
    assert rc(None, "apply", saved).code == 0  # the undamaged plan still applies
