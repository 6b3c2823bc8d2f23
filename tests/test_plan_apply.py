"""Plan and apply through the command line, on SQLite and PostgreSQL: create, update field by
field, drift, unmanaged rows and their adoption. The guards: test_apply_guards.py; saved plans:
test_saved_plans.py.

"Nothing written" is checked three ways: no INSERT/UPDATE/DELETE statement, the generation and
revisions unchanged, and the tables themselves unchanged (`iterdump()` on SQLite; every row with its
`xmin` on PostgreSQL).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from reconciler.adapters.db.tables import providers, routes
from tests.builders import EXAMPLE, PROVIDERS, local_ollama_routes
from tests.cli_checks import Run
from tests.db_inspect import (
    generation,
    insert_unmanaged_provider,
    insert_unmanaged_route,
    revision_count,
    rows,
    snapshot,
    sql,
)

# --- create, no-op ---------------------------------------------------------------------------


def test_first_apply_creates_everything_and_applying_the_same_files_again_writes_nothing(
    rc: Run, engine: Engine, write_config: Callable[..., Path], writes: list[str]
) -> None:
    config = write_config(EXAMPLE)
    before = rc(config, "plan", "--detailed-exitcode")
    assert before.code == 2, before.output
    result = rc(config, "apply")
    assert result.code == 0, result.output
    assert "Plan: 4 to create, 0 to update, 0 to delete, 0 unchanged." in result.stdout
    assert "Apply complete: generation 1." in result.stdout
    stored = rows(engine, providers, "name")
    assert set(stored) == {"local-ollama", "openrouter"}
    assert stored["openrouter"].config["endpoint"]["api_key"] == {"env": "OPENROUTER_API_KEY"}
    tasks = rows(engine, routes, "task")
    assert set(tasks) == {"scoring", "summarization"}
    scoring = tasks["scoring"]
    assert (scoring.provider, scoring.model, scoring.required) == (
        "local-ollama",
        "llama3.1:8b",
        True,
    )
    assert scoring.fallbacks == [
        {"provider": "openrouter", "model": "meta-llama/llama-3.1-8b-instruct", "params": {}}
    ]
    assert scoring.source_file.endswith("routes.yaml") and scoring.source_line == 3
    every = [*stored.values(), *tasks.values()]
    assert {(r.managed_by, r.generation) for r in every} == {("config", 1)}
    assert generation(engine) == 1 and revision_count(engine) == 1

    after = rc(config, "plan", "--detailed-exitcode")
    assert after.code == 0, after.output
    assert "No changes." in after.stdout
    assert "Plan: 0 to create, 0 to update, 0 to delete, 4 unchanged." in after.stdout

    dump = snapshot(engine)
    writes.clear()
    again = rc(config, "apply")
    assert again.code == 0, again.output
    assert writes == []
    assert "Nothing to apply; nothing was written (generation 1)." in again.stdout
    assert snapshot(engine) == dump
    assert generation(engine) == 1 and revision_count(engine) == 1


# --- update ----------------------------------------------------------------------------------


def test_changing_k_of_200_routes_writes_exactly_k_rows(
    rc: Run, engine: Engine, write_config: Callable[..., Path], writes: list[str]
) -> None:
    models = {f"task-{i:03d}": f"model-{i}" for i in range(200)}
    config = write_config({"providers.yaml": PROVIDERS, "routes.yaml": local_ollama_routes(models)})
    assert rc(config, "apply").code == 0
    changed = {"task-007": "model-7b", "task-100": "model-100b", "task-199": "model-199b"}
    write_config({"routes.yaml": local_ollama_routes({**models, **changed})})
    writes.clear()
    result = rc(config, "apply")
    assert result.code == 0, result.output
    assert "Plan: 0 to create, 3 to update, 0 to delete, 199 unchanged." in result.stdout
    tasks = rows(engine, routes, "task")
    rewritten = {task for task, row in tasks.items() if row.generation == 2}
    assert rewritten == set(changed)
    assert {tasks[t].model for t in changed} == set(changed.values())
    assert {row.generation for row in rows(engine, providers, "name").values()} == {1}
    # One UPDATE of the routes (executemany), the generation bump, the revision.
    route_writes = [s for s in writes if "llm_task_routes" in s]
    assert len(route_writes) == 1 and route_writes[0].lstrip().startswith("UPDATE")
    assert len(writes) == 3


def test_plan_shows_updates_field_by_field_in_text_and_in_stable_versioned_json(
    rc: Run, write_config: Callable[..., Path]
) -> None:
    extra = """\
  zeta:
    type: ollama
    endpoint: {base_url: http://10.0.0.2:11434}
  alpha:
    type: ollama
    endpoint: {base_url: http://10.0.0.3:11434}
"""
    models = {f"t{i}": "m" for i in range(6)}
    config = write_config(
        {"providers.yaml": PROVIDERS + extra, "routes.yaml": local_ollama_routes(models)}
    )
    assert rc(config, "apply").code == 0
    kept = {"t0": "m", "t2": "m-new", "t4": "m", "t5": "m", "new-b": "m", "new-a": "m"}
    changed_providers = PROVIDERS.replace("keep_alive: 5m", "keep_alive: 10m")
    write_config({"providers.yaml": changed_providers, "routes.yaml": local_ollama_routes(kept)})

    text_plan = rc(config, "plan")
    assert text_plan.code == 0, text_plan.output
    out = text_plan.stdout
    assert "~ update provider 'local-ollama'" in out
    assert 'config.keep_alive: "5m" -> "10m"' in out
    assert "~ update route 't2'" in out
    assert 'model: "m" -> "m-new"' in out
    assert "- delete route 't1'" in out and "- delete provider 'zeta'" in out
    assert "+ create route 'new-a'" in out
    # An update lists only the fields that change.
    update_block = out.split("~ update route 't2'")[1].split("\n\n")[0]
    assert [line.strip() for line in update_block.splitlines()[1:]] == ['model: "m" -> "m-new"']
    assert out.rstrip().endswith("Plan: 2 to create, 2 to update, 4 to delete, 4 unchanged.")

    first = rc(config, "plan", "--format", "json")
    second = rc(config, "plan", "--format", "json")
    assert first.code == 0, first.output
    assert first.stdout == second.stdout
    document = json.loads(first.stdout)
    assert document["format_version"] == 1
    assert document["summary"] == {
        "create": 2,
        "update": 2,
        "delete": 4,
        "adopt": 0,
        "unchanged": 4,
    }
    order = [(a["op"], a["kind"], a["key"]) for a in document["actions"]]
    assert order == [
        # Deletions first: routes before the providers they may use, then by name.
        ("delete", "route", "t1"),
        ("delete", "route", "t3"),
        ("delete", "provider", "alpha"),
        ("delete", "provider", "zeta"),
        # Then providers before the routes that use them, by name.
        ("update", "provider", "local-ollama"),
        ("create", "route", "new-a"),
        ("create", "route", "new-b"),
        ("update", "route", "t2"),
    ]
    update = document["actions"][-1]
    assert update["changes"] == [{"path": "model", "old": "m", "new": "m-new"}]
    assert update["source"]["file"].endswith("routes.yaml")


# --- drift, unmanaged rows, adoption ---------------------------------------------------------


def test_a_managed_row_edited_with_raw_sql_is_flagged_as_drift_and_put_back_by_apply(
    rc: Run, engine: Engine, write_config: Callable[..., Path]
) -> None:
    config = write_config(EXAMPLE)
    assert rc(config, "apply").code == 0
    sql(engine, "UPDATE llm_task_routes SET model = 'hacked' WHERE task = 'scoring'")
    plan = rc(config, "plan", "--detailed-exitcode")
    assert plan.code == 2, plan.output
    assert "~ update route 'scoring'" in plan.stdout
    assert "drift" in plan.stdout
    assert 'model: "hacked" -> "llama3.1:8b"' in plan.stdout
    document = json.loads(rc(config, "plan", "--format", "json").stdout)
    [action] = document["actions"]
    assert (action["key"], action["drift"]) == ("scoring", True)
    assert rc(config, "apply").code == 0
    assert rows(engine, routes, "task")["scoring"].model == "llama3.1:8b"
    assert rc(config, "plan", "--detailed-exitcode").code == 0


def test_unmanaged_rows_are_listed_never_touched_and_adopted_once_declared(
    rc: Run, engine: Engine, write_config: Callable[..., Path]
) -> None:
    config = write_config(EXAMPLE)
    assert rc(config, "apply").code == 0
    insert_unmanaged_provider(engine, "manual")
    insert_unmanaged_route(engine, "handmade", "manual")
    insert_unmanaged_route(engine, "adoptee", "local-ollama")
    before = {
        "manual": rows(engine, providers, "name")["manual"],
        "handmade": rows(engine, routes, "task")["handmade"],
    }
    plan = rc(config, "plan", "--detailed-exitcode")
    assert plan.code == 0, plan.output
    assert "Not managed by the files (left alone):" in plan.stdout
    assert "provider 'manual'" in plan.stdout and "route 'handmade'" in plan.stdout
    document = json.loads(rc(config, "plan", "--format", "json").stdout)
    assert document["unmanaged"] == [
        {"kind": "provider", "key": "manual"},
        {"kind": "route", "key": "adoptee"},
        {"kind": "route", "key": "handmade"},
    ]

    # Declaring one in the files adopts it, with no other change.
    write_config({"more.yaml": local_ollama_routes({"adoptee": "hand-made"})})
    adopt = rc(config, "plan", "--detailed-exitcode")
    assert adopt.code == 2, adopt.output
    assert "adopt route 'adoptee'" in adopt.stdout
    assert "Plan: 0 to create, 1 to adopt, 0 to update, 0 to delete, 4 unchanged." in adopt.stdout
    assert rc(config, "apply").code == 0
    adopted = rows(engine, routes, "task")["adoptee"]
    assert (adopted.managed_by, adopted.generation) == ("config", 2)
    assert adopted.source_file.endswith("more.yaml")
    assert rc(config, "plan", "--detailed-exitcode").code == 0

    # Even a plan that deletes every managed row leaves the unmanaged ones alone.
    write_config({"providers.yaml": "version: 1\n", "routes.yaml": "version: 1\n"})
    (config / "more.yaml").unlink()
    result = rc(config, "apply", "--allow-mass-delete")
    assert result.code == 0, result.output
    assert rows(engine, providers, "name") == {"manual": before["manual"]}
    assert rows(engine, routes, "task") == {"handmade": before["handmade"]}
