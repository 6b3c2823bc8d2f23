"""Database rows that `export` could not write back as files, made by hand as an operator would:
refused in one line each, never a traceback, and nothing written. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, insert

from reconciler.adapters.db.tables import providers, routes
from tests.builders import ONE_ROUTE_CONFIG
from tests.cli_checks import ESC, Run, assert_one_line_error


def insert_unmanaged(
    engine: Engine,
    provider_rows: Sequence[tuple[str, str, Any]] = (),
    route_rows: Sequence[tuple[str, str, Any]] = (),
) -> None:
    """Rows as a hand or an older tool could have written them: (name, type, config) and
    (task, provider, fallbacks)."""
    now = datetime.now(UTC)
    common = {"managed_by": "ops", "protect": False, "enabled": True}
    with engine.begin() as conn:
        for name, type_name, config in provider_rows:
            conn.execute(
                insert(providers).values(
                    name=name,
                    type=type_name,
                    config=config,
                    created_at=now,
                    updated_at=now,
                    **common,
                )
            )
        for task, provider, fallbacks in route_rows:
            conn.execute(
                insert(routes).values(
                    task=task,
                    provider=provider,
                    model="m",
                    required=False,
                    params={},
                    fallbacks=fallbacks,
                    created_at=now,
                    updated_at=now,
                    **common,
                )
            )


GOOD_CONFIG = {"endpoint": {"base_url": "http://10.0.0.9:11434"}}


def test_export_refuses_a_row_the_files_could_not_declare_in_one_line_and_writes_nothing(
    rc: Run, engine: Engine, tmp_path: Path
) -> None:
    insert_unmanaged(
        engine, [("legacy", "ollama", GOOD_CONFIG)], [(f"BAD KEY{ESC}[31m", "legacy", [])]
    )
    out = tmp_path / "exported"
    result = rc(None, "export", "--out", out)
    assert_one_line_error(
        result,
        "error: route 'BAD KEY\\x1b[31m' in the database has an invalid name: use lowercase",
        "nothing was exported: fix or remove these rows, then export again",
    )
    assert not out.exists()


def test_export_lists_every_row_it_cannot_write_back_and_writes_nothing(
    rc: Run, engine: Engine, tmp_path: Path
) -> None:
    insert_unmanaged(
        engine,
        [
            ("legacy", "ollama", GOOD_CONFIG),
            ("gone-type", "llamafile", GOOD_CONFIG),
            ("metadata", "ollama", {"endpoint": {"base_url": "http://169.254.169.254/"}}),
            ("a-list", "ollama", ["not", "a", "mapping"]),
            ("typo", "ollama", {**GOOD_CONFIG, "keep_alive": "5 minutes", "modle": 1}),
        ],
        [
            ("orphan", "legacy", [{"provider": "nobody", "model": "x"}]),
            ("fine", "legacy", []),
            ("shouty", "legacy", []),
        ],
    )
    with engine.begin() as conn:
        conn.execute(routes.update().where(routes.c.task == "shouty").values(model=f"m{ESC}[2J"))
    out = tmp_path / "exported"
    result = rc(None, "export", "--out", out)
    assert result.code == 1, result.output
    assert "Traceback" not in result.output and ESC not in result.output
    lines = result.stderr.splitlines()
    assert lines[:-1] == [
        "provider 'a-list' in the database is not a valid spec: config: must be a mapping",
        "provider 'gone-type' in the database is not a valid spec: type: 'llamafile' is not a "
        "registered provider type (registered: anthropic, ollama, openai_compatible)",
        lines[2],
        "provider 'typo' in the database is not a valid spec: keep_alive: keep_alive must be a "
        "duration such as 30s, 5m, 1h, 0 or -1",
        "provider 'typo' in the database is not a valid spec: modle: not a field of this format",
        "route 'orphan' in the database uses provider 'nobody' at fallbacks[0], which does not "
        "exist",
        "route 'shouty' in the database is not a valid spec: model: the value holds the control "
        "character U+001B (ESC) at character 2",
    ]
    assert lines[2].startswith(
        "provider 'metadata' in the database is not a valid spec: endpoint.base_url: "
    )
    assert lines[-1] == (
        "error: 7 problems; nothing was exported: fix or remove these rows, then export again"
    )
    assert not out.exists()


def test_export_refuses_files_the_loader_would_not_read_back(
    rc: Run, engine: Engine, tmp_path: Path
) -> None:
    # Valid JSON in a valid spec, but nested deeper than any config file may nest.
    deep: Any = "bottom"
    for _ in range(40):
        deep = {"d": deep}
    insert_unmanaged(engine, [("legacy", "ollama", GOOD_CONFIG)], [("deep", "legacy", [])])
    with engine.begin() as conn:
        conn.execute(routes.update().where(routes.c.task == "deep").values(params={"x": deep}))
    out = tmp_path / "exported"
    result = rc(None, "export", "--out", out)
    assert_one_line_error(
        result,
        "error: routes.yaml (not written): ",
        "nests deeper than 32 levels",
        "nothing was exported",
    )
    assert not out.exists()


def test_export_writes_line_separators_and_control_characters_so_they_read_back_exactly(
    cli: Run, rc: Run, engine: Engine, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    # LS, PS, NEL and CSI in a model name; a tab and a line feed in the text of params.
    model = '"a\\Lb\\Pc\\Nd\\x9be"'
    params = '    params: {note: "tab\\tand\\nnewline"}\n'
    config = write_config(
        {"config.yaml": ONE_ROUTE_CONFIG.replace("model: llama3.1:8b", f"model: {model}") + params}
    )
    assert rc(config, "apply").code == 0
    out = tmp_path / "exported"
    exported = rc(None, "export", "--out", out)
    assert exported.code == 0, exported.output
    text = (out / "routes.yaml").read_text("utf-8")
    for raw in ("\u2028", "\u2029", "\x85", "\x9b", "\t"):
        assert raw not in text
    assert cli("validate", out).code == 0
    again = rc(out, "plan", "--detailed-exitcode")
    assert again.code == 0, again.output
    assert "0 to create, 0 to update, 0 to delete, 2 unchanged." in again.stdout


def test_export_refuses_files_that_would_read_back_different_from_the_rows(
    rc: Run,
    engine: Engine,
    write_config: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # PyYAML's own dumper follows YAML 1.1, where `1e3` is text and so is written unquoted;
    # the loader follows YAML 1.2 and reads a number. The reload check catches any dumper
    # whose files would not give back exactly the rows.
    def yaml11_dump(document: dict[str, Any]) -> str:
        return yaml.dump(document, Dumper=yaml.SafeDumper, sort_keys=False, allow_unicode=True)

    monkeypatch.setattr("reconciler.adapters.export.dump_yaml", yaml11_dump)
    config = write_config({"config.yaml": ONE_ROUTE_CONFIG + '    params: {x: "1e3"}\n'})
    assert rc(config, "apply").code == 0
    out = tmp_path / "exported"
    result = rc(None, "export", "--out", out)
    assert_one_line_error(
        result,
        "error: route 'scoring' in the database would not be read back from YAML as it is "
        "stored (params.x); nothing was exported",
    )
    assert not out.exists()
