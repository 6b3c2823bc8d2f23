"""The plan sees every change the JSON would show, and a saved plan can only write valid specs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from reconciler.core.plan import Desired, Kind, Observed, Op, essence_hash, make_plan
from tests.conftest import Result

ROUTE = {"provider": "p", "model": "m", "params": {"seed": 1, "think": False}}


def test_one_and_true_are_different_values_to_the_plan() -> None:
    stored = dict(ROUTE)
    wanted = {**ROUTE, "params": {"seed": True, "think": 0}}
    observed = [Observed(Kind.route, "scoring", stored, "config", essence_hash(stored))]
    plan = make_plan([Desired(Kind.route, "scoring", wanted)], observed, "digest")
    [action] = plan.actions
    assert action.op is Op.update
    assert {(c.path, c.old, c.new) for c in action.changes} == {
        ("params.seed", 1, True),
        ("params.think", False, 0),
    }


def test_lists_that_differ_only_in_types_are_a_change() -> None:
    stored = {**ROUTE, "params": {"stop": [1]}}
    wanted = {**ROUTE, "params": {"stop": [True]}}
    observed = [Observed(Kind.route, "scoring", stored, "config", essence_hash(stored))]
    plan = make_plan([Desired(Kind.route, "scoring", wanted)], observed, "digest")
    assert [a.op for a in plan.actions] == [Op.update]


PROVIDERS = """\
version: 1
providers:
  cloud:
    type: openai_compatible
    endpoint:
      base_url: https://api.example.com/v1
      api_key: {env: CLOUD_KEY}
routes:
  scoring: {provider: cloud, model: gpt-4o-mini}
"""
LITERAL = "sk-literal-0d9f8e7c6b5a-must-not-land"


def test_an_edited_saved_plan_cannot_write_a_literal_secret_or_a_metadata_url(
    cli: Callable[..., Result],
    write_config: Callable[..., Path],
    db_url: str,
    tmp_path: Path,
) -> None:
    directory = write_config({"config.yaml": PROVIDERS})

    def run(*args: str) -> Result:
        return cli("--database-url", db_url, "--config", str(directory), *args)

    assert run("db", "upgrade").code == 0
    plan_file = tmp_path / "plan.json"
    assert run("plan", "--out", str(plan_file)).code == 0
    document = json.loads(plan_file.read_text())
    provider = next(a for a in document["actions"] if a["kind"] == "provider")
    for edit in (
        {"api_key": LITERAL},
        {"base_url": "http://169.254.169.254/latest"},
    ):
        provider["essence"]["config"]["endpoint"].update(edit)
        plan_file.write_text(json.dumps(document))
        result = run("apply", str(plan_file))
        assert result.code == 1
        assert "the saved plan's provider 'cloud' is not a valid spec" in result.stderr
        assert LITERAL not in result.output
        provider["essence"]["config"]["endpoint"]["api_key"] = {"env": "CLOUD_KEY"}
        provider["essence"]["config"]["endpoint"]["base_url"] = "https://api.example.com/v1"
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT count(*) FROM llm_provider_configs")).scalar_one()
    finally:
        engine.dispose()
    assert rows == 0


def test_a_bad_setting_in_the_environment_is_an_error_not_a_traceback(
    cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_LOG_FORMAT", "xml")
    result = cli("validate")
    assert result.code == 1
    assert "RECONCILER_LOG_FORMAT: must be 'text' or 'json'" in result.stderr
    assert "Traceback" not in result.output


def test_only_updates_that_undo_outside_changes_are_left_out_when_drift_is_reported() -> None:
    from reconciler.core.plan import without_pure_drift

    applied = dict(ROUTE)
    changed_outside = {**ROUTE, "model": "edited-by-hand"}
    edited_in_files = {**ROUTE, "model": "new"}
    observed = [
        Observed(Kind.route, "a", changed_outside, "config", essence_hash(applied)),
        Observed(Kind.route, "b", changed_outside, "config", essence_hash(applied)),
    ]
    desired = [Desired(Kind.route, "a", applied), Desired(Kind.route, "b", edited_in_files)]
    plan = make_plan(desired, observed, "digest")
    assert [(a.key, a.drift) for a in plan.actions] == [("a", True), ("b", True)]
    kept = without_pure_drift(plan, observed)
    assert [a.key for a in kept.actions] == ["b"]
    assert kept.unchanged == plan.unchanged + 1
