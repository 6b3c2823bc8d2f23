"""`reconciler status` and `plan --probe` as a user runs them, against fake providers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import Result, run_reconciler
from tests.fakeprovider import OPENAI, FakeModel, FakeServer

SECRET = "sk-or-planted-5b8e2d-never-shown"


def config(local_url: str, cloud_url: str, scoring_model: str = "llama3.1:8b") -> dict[str, str]:
    return {
        "providers.yaml": f"""\
version: 1
providers:
  local-ollama:
    type: ollama
    endpoint: {{base_url: "{local_url}", probe_timeout_s: 1}}
  cloud:
    type: openai_compatible
    endpoint:
      base_url: "{cloud_url}"
      api_key: {{env: CLOUD_KEY}}
      probe_timeout_s: 1
""",
        "routes.yaml": f"""\
version: 1
routes:
  scoring:
    provider: local-ollama
    model: {scoring_model}
    required: true
    fallbacks:
      - {{provider: cloud, model: gpt-4o-mini}}
  extraction:
    provider: cloud
    model: gpt-4o-mini
  summarization:
    provider: local-ollama
    model: qwen2.5:7b
    enabled: false
""",
    }


@pytest.fixture
def setup(
    fake: FakeServer,
    write_config: Callable[..., Path],
    db_url: str,
    cli: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Result]:
    """Fake providers, the config applied; returns a runner of `reconciler ARGS` on them."""
    monkeypatch.setenv("CLOUD_KEY", SECRET)
    local = fake.add("local-ollama", models=[FakeModel("llama3.1:8b", loaded=True)])
    cloud = fake.add("cloud", kind=OPENAI, models=[FakeModel("gpt-4o-mini")], api_key=SECRET)
    directory = write_config(config(local, cloud))

    def run(*args: str) -> Result:
        return cli("--database-url", db_url, "--config", str(directory), *args)

    assert run("db", "upgrade").code == 0
    applied = run("apply")
    assert applied.code == 0, applied.output
    return run


def test_status_probe_shows_every_task_ready_and_exits_0(setup: Callable[..., Result]) -> None:
    result = setup("status", "--probe")
    assert result.code == 0, result.output
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "ready" in lines["scoring"]
    assert "local-ollama/llama3.1:8b" in lines["scoring"]
    assert "ready" in lines["extraction"]
    assert "route_disabled" in lines["summarization"]
    assert "2 of 3 task(s) servable; required tasks (*): all servable." in result.stdout


def test_a_missing_model_says_what_to_pull_and_a_required_task_down_exits_3(
    setup: Callable[..., Result], fake: FakeServer
) -> None:
    fake.behaviours["local-ollama"].models = [FakeModel("other:1b")]
    fake.behaviours["cloud"].status = 500
    result = setup("status", "--probe")
    assert result.code == 3, result.output
    assert "not_ready" in result.stdout
    assert "model_missing" in result.stdout
    assert (
        "fix: ollama pull llama3.1:8b on local-ollama, or fix routes.scoring.model" in result.stdout
    )
    assert "NOT all servable" in result.stdout


def test_a_dead_primary_with_a_live_fallback_is_degraded_and_still_exits_0(
    setup: Callable[..., Result], fake: FakeServer
) -> None:
    fake.behaviours["local-ollama"].status = 503
    result = setup("status", "--probe", "--format", "json")
    assert result.code == 0, result.output
    document = json.loads(result.stdout)
    scoring = next(t for t in document["tasks"] if t["task"] == "scoring")
    assert (scoring["status"], scoring["reason"]) == ("degraded", "server_error")
    assert scoring["served_by"] == "cloud/gpt-4o-mini"
    assert document["format_version"] == 1
    assert document["ready"] is True


def test_status_without_probe_reads_the_last_check_and_says_how_old_it_is(
    setup: Callable[..., Result],
) -> None:
    before = setup("status")
    assert before.code == 3
    assert "never" in before.stdout
    assert "fix: run `reconciler status --probe`" in before.stdout
    assert setup("status", "--probe").code == 0
    after = setup("status", "--format", "json")
    assert after.code == 0
    tasks = {t["task"]: t for t in json.loads(after.stdout)["tasks"]}
    assert tasks["scoring"]["status"] == "ready"
    assert tasks["scoring"]["age_s"] is not None
    assert tasks["scoring"]["provider_version"] == "0.6.2"
    assert tasks["scoring"]["warm"] is True


def test_a_config_change_makes_the_last_check_stale(
    setup: Callable[..., Result], write_config: Callable[..., Path], fake: FakeServer
) -> None:
    assert setup("status", "--probe").code == 0
    write_config(
        config(fake.base_url("local-ollama"), fake.base_url("cloud"), scoring_model="llama3.2:3b")
    )
    assert setup("apply").code == 0
    result = setup("status", "--format", "json")
    scoring = next(t for t in json.loads(result.stdout)["tasks"] if t["task"] == "scoring")
    assert scoring["status"] == "stale"
    assert "generation" in scoring["detail"]
    assert result.code == 3


def test_plan_probe_warns_about_a_route_nothing_could_serve(
    setup: Callable[..., Result], write_config: Callable[..., Path], fake: FakeServer
) -> None:
    fake.behaviours["cloud"].status = 500
    write_config(
        config(fake.base_url("local-ollama"), fake.base_url("cloud"), scoring_model="llama3.2:3b")
    )
    result = setup("plan", "--probe", "--detailed-exitcode")
    assert result.code == 2
    assert (
        "warning: after this apply, task scoring could not be served: model_missing"
        in result.stderr
    )
    assert "fix: ollama pull llama3.2:3b on local-ollama" in result.stderr
    assert "task extraction could not be served: server_error" in result.stderr


def test_status_as_a_process_never_shows_the_key_and_stores_no_secret(
    fake: FakeServer, write_config: Callable[..., Path], db_url: str
) -> None:
    local = fake.add("local-ollama", models=[FakeModel("llama3.1:8b")])
    cloud = fake.add("cloud", kind=OPENAI, models=[FakeModel("gpt-4o-mini")], api_key="another")
    directory = write_config(config(local, cloud))
    env = {
        "CLOUD_KEY": SECRET,
        "RECONCILER_DATABASE_URL": db_url,
        "RECONCILER_CONFIG_DIR": str(directory),
    }
    outputs = [run_reconciler(*args, env=env) for args in (["db", "upgrade"], ["apply"])]
    outputs += [
        run_reconciler("-v", "status", "--probe", *fmt, env=env)
        for fmt in ([], ["--format", "json"])
    ]
    assert outputs[-1].code == 0, outputs[-1].output  # scoring is ready; extraction is not required
    assert "auth_failed" in outputs[-2].stdout
    assert all(SECRET not in result.output for result in outputs)
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT * FROM task_readiness")).all()
    finally:
        engine.dispose()
    assert rows
    assert SECRET not in repr(rows)


def test_a_task_with_queued_jobs_but_no_route_is_shown_as_no_route(
    setup: Callable[..., Result], tmp_path: Path
) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text('{"id": "1", "text": "tag me"}\n', encoding="utf-8")
    assert setup("enqueue", "tagging", str(items), "--allow-unrouted").code == 0
    for args in (("status",), ("status", "--probe")):
        result = setup(*args, "--format", "json")
        tagging = next(t for t in json.loads(result.stdout)["tasks"] if t["task"] == "tagging")
        assert (tagging["status"], tagging["reason"]) == ("not_ready", "no_route")
        assert "add a route for tagging" in tagging["remedy"]
