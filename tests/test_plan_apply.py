"""Plan and apply through the command line, on SQLite and PostgreSQL.

Create, update field by field, delete, adopt, drift, the guards (mass deletion, protect, a
provider still in use), saved plans, and the schema guard. "Nothing written" is checked three
ways: no INSERT/UPDATE/DELETE statement, the generation and revisions unchanged, and the tables
themselves unchanged (`iterdump()` on SQLite; every row with its `xmin` on PostgreSQL).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from reconciler.adapters.db.engine import make_engine
from reconciler.adapters.db.tables import providers, revisions, routes
from tests.builders import EXAMPLE, PROVIDERS, ROUTES, local_ollama_routes
from tests.conftest import Result
from tests.db_inspect import (
    generation,
    insert_unmanaged_provider,
    insert_unmanaged_route,
    recording_writes,
    revision_count,
    rows,
    snapshot,
    sql,
    url_of,
)

Run = Callable[..., Result]


@pytest.fixture
def rc(cli: Run, engine: Engine) -> Run:
    """`reconciler --database-url URL [--config DIR] ARGS` in this process."""

    def run(config: Path | None, *args: str | Path) -> Result:
        given: list[str | Path] = ["--database-url", url_of(engine)]
        if config is not None:
            given += ["--config", config]
        return cli(*given, *args)

    return run


@pytest.fixture
def writes() -> Iterator[list[str]]:
    with recording_writes() as seen:
        yield seen


# --- create, no-op --------------------------------------------------------------------------


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


# --- update ---------------------------------------------------------------------------------


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


# --- deletion and its guards -----------------------------------------------------------------


def test_removed_routes_are_deleted_but_deleting_more_than_half_needs_allow_mass_delete(
    rc: Run, engine: Engine, write_config: Callable[..., Path], writes: list[str]
) -> None:
    models = {f"r{i}": "m" for i in range(8)}
    config = write_config({"routes.yaml": local_ollama_routes(models), "p.yaml": PROVIDERS})
    assert rc(config, "apply").code == 0  # 10 managed rows

    write_config({"routes.yaml": local_ollama_routes({f"r{i}": "m" for i in range(1, 8)})})
    plan = rc(config, "plan")
    assert "- delete route 'r0'" in plan.stdout
    assert "0 to create, 0 to update, 1 to delete, 9 unchanged." in plan.stdout
    assert rc(config, "apply").code == 0  # 1 of 10
    assert "r0" not in rows(engine, routes, "task")

    write_config({"routes.yaml": local_ollama_routes({f"r{i}": "m" for i in range(5, 8)})})
    assert rc(config, "apply").code == 0  # 4 of 9: not more than half
    assert set(rows(engine, routes, "task")) == {"r5", "r6", "r7"}

    # 5 managed rows left: deleting 3 (more than half) or all 5 is refused.
    cases = [
        ({"p.yaml": PROVIDERS, "routes.yaml": local_ollama_routes({})}, 3),
        ({"p.yaml": "version: 1\n", "routes.yaml": "version: 1\n"}, 5),
    ]
    for files, deleted in cases:
        write_config(files)
        before = snapshot(engine)
        writes.clear()
        refused = rc(config, "apply")
        assert refused.code == 1, refused.output
        assert f"deletes {deleted} of 5 managed rows" in refused.stderr
        assert "--allow-mass-delete" in refused.stderr
        assert "Traceback" not in refused.output
        assert writes == [] and snapshot(engine) == before
    allowed = rc(config, "apply", "--allow-mass-delete")
    assert allowed.code == 0, allowed.output
    assert rows(engine, providers, "name") == {} and rows(engine, routes, "task") == {}


def test_an_empty_or_missing_config_directory_never_deletes_anything(
    rc: Run, engine: Engine, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = write_config(EXAMPLE)
    assert rc(config, "apply").code == 0
    before = snapshot(engine)
    empty = tmp_path / "empty"
    empty.mkdir()
    leftovers = write_config(
        {"routes.yaml~": ROUTES, ".#providers.yaml": PROVIDERS, "x.swp": ""}, "leftovers"
    )
    for target in (empty, tmp_path / "missing", leftovers):
        for args in (["plan"], ["apply"], ["apply", "--allow-mass-delete"]):
            result = rc(target, *args)
            assert result.code == 1, (target, args, result.output)
            assert "nothing was planned or written" in result.stderr
            assert "Traceback" not in result.output
    assert snapshot(engine) == before


def test_a_protected_row_is_not_deleted_until_a_change_sets_protect_false(
    rc: Run, engine: Engine, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    spare = (
        "  spare:\n    type: ollama\n    protect: {flag}\n"
        "    endpoint: {{base_url: http://10.0.0.2:11434}}\n"
    )
    models = {"scoring": "m", "a": "m", "b": "m", "c": "m"}

    def files(flag: str | None) -> dict[str, str]:
        """Both protected rows declared with `protect: flag`, or (None) both removed."""
        if flag is None:
            return {
                "p.yaml": PROVIDERS,
                "r.yaml": local_ollama_routes({"a": "m", "b": "m", "c": "m"}),
            }
        extra = {"scoring": f"protect: {flag}"}
        return {
            "p.yaml": PROVIDERS + spare.format(flag=flag),
            "r.yaml": local_ollama_routes(models, extra),
        }

    config = write_config(files("true"))
    assert rc(config, "apply").code == 0
    assert rows(engine, routes, "task")["scoring"].protect is True
    assert rows(engine, providers, "name")["spare"].protect is True

    write_config(files(None))
    before = snapshot(engine)
    for args in (["apply"], ["apply", "--allow-mass-delete"]):
        refused = rc(config, *args)
        assert refused.code == 1, refused.output
        assert "route 'scoring' is protected" in refused.stderr
        assert "provider 'spare' is protected" in refused.stderr
        assert "protect: false" in refused.stderr
    saved = tmp_path / "plan.json"
    plan = rc(config, "plan", "--detailed-exitcode", "--out", saved)
    assert plan.code == 1 and "Refused:" in plan.stdout
    # A saved plan whose refusals were edited away is refused all the same.
    document = json.loads(saved.read_text())
    document["refusals"] = []
    saved.write_text(json.dumps(document))
    tampered = rc(None, "apply", saved)
    assert tampered.code == 1 and "is protected" in tampered.stderr
    assert snapshot(engine) == before

    # Set protect: false first, then remove them.
    write_config(files("false"))
    assert rc(config, "apply").code == 0
    assert rows(engine, routes, "task")["scoring"].protect is False
    write_config(files(None))
    result = rc(config, "apply")
    assert result.code == 0, result.output
    assert "scoring" not in rows(engine, routes, "task")
    assert "spare" not in rows(engine, providers, "name")


def test_deleting_a_provider_still_used_by_an_unmanaged_route_is_refused(
    rc: Run, engine: Engine, write_config: Callable[..., Path]
) -> None:
    spares = "".join(
        f"  {name}:\n    type: ollama\n    endpoint: {{base_url: http://10.0.0.2:11434}}\n"
        for name in ("spare", "backup")
    )
    models = {f"r{i}": "m" for i in range(4)}
    config = write_config(
        {"providers.yaml": PROVIDERS + spares, "routes.yaml": local_ollama_routes(models)}
    )
    assert rc(config, "apply").code == 0
    insert_unmanaged_route(engine, "handmade", "spare")
    fallbacks = '[{"provider": "backup", "model": "x", "params": {}}]'
    insert_unmanaged_route(engine, "fallback-user", "local-ollama", fallbacks)
    write_config({"providers.yaml": PROVIDERS})
    before = snapshot(engine)
    refused = rc(config, "apply")
    assert refused.code == 1, refused.output
    assert "provider 'spare' can't be deleted: route 'handmade'" in refused.stderr
    assert "provider 'backup' can't be deleted: route 'fallback-user'" in refused.stderr
    assert "Traceback" not in refused.output
    assert snapshot(engine) == before
    assert rc(config, "plan").code == 1


# --- saved plans -----------------------------------------------------------------------------


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


# --- the schema guard ------------------------------------------------------------------------


def test_plan_and_apply_refuse_a_database_not_migrated_behind_or_ahead(
    cli: Run, db_url: str, write_config: Callable[..., Path]
) -> None:
    config = write_config(EXAMPLE)

    def refused(expected: list[str]) -> None:
        for args in (["plan"], ["plan", "--detailed-exitcode"], ["apply"], ["history"]):
            result = cli("--database-url", db_url, "--config", config, *args)
            assert result.code == 1, (args, result.output)
            assert "Traceback" not in result.output
            for words in expected:
                assert words in result.stderr, (args, result.stderr)

    refused(["no reconciler schema yet", "run `reconciler db upgrade`"])
    assert cli("--database-url", db_url, "db", "upgrade", "0001").code == 0
    refused(["at revision 0001, behind", "run `reconciler db upgrade`"])
    assert cli("--database-url", db_url, "db", "upgrade").code == 0
    engine = make_engine(db_url)
    try:
        sql(engine, "UPDATE alembic_version SET version_num = '9999_from_the_future'")
        # Upgrading the database cannot help: it is newer than this reconciler.
        refused(["9999_from_the_future", "upgrade reconciler"])
        assert revision_count(engine) == 0 and generation(engine) == 0
    finally:
        engine.dispose()
