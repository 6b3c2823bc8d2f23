"""What plan and apply refuse, through the command line, on SQLite and PostgreSQL: deleting more
than half the managed rows, deleting from an empty or missing config directory, a protected row,
a provider still in use; and a database not migrated to this version (the schema guard).

"Nothing written" is checked three ways: no INSERT/UPDATE/DELETE statement, the generation and
revisions unchanged, and the tables themselves unchanged (`iterdump()` on SQLite; every row with its
`xmin` on PostgreSQL).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from reconciler.adapters.db.engine import make_engine
from reconciler.adapters.db.tables import providers, routes
from tests.builders import EXAMPLE, PROVIDERS, ROUTES, local_ollama_routes
from tests.cli_checks import Run
from tests.db_inspect import (
    generation,
    insert_unmanaged_route,
    revision_count,
    rows,
    snapshot,
    sql,
)

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
