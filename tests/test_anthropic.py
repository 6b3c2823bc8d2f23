"""`type: anthropic` against a fake Messages API on 127.0.0.1: its free probe (the model list,
`x-api-key`), its calls (a forced `answer` tool, the system prompt on top, `max_tokens`), its
failures, and a planted key that never shows. The real api.anthropic.com is never contacted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters.providers.anthropic import AnthropicDriver
from reconciler.adapters.providers.probe import Target, probe_once
from reconciler.core.readiness import ProbeReport, ProviderView, Reason, RouteView, verdicts
from reconciler.core.scoring import DEFAULT_MAX_OUTPUT_TOKENS
from reconciler.core.spec import ANTHROPIC_API, AnthropicProvider
from tests.conftest import Result
from tests.fakeprovider import (
    ANTHROPIC,
    FakeModel,
    FakeServer,
    answering,
    anthropic_error,
    failing,
)
from tests.scoring_bed import Scene
from tests.scoring_worker import migrated_database

pytestmark = pytest.mark.timeout(120)

SECRET = "sk-ant-planted-4c1d9e-never-shown"
KEY_ENV = "ANTHROPIC_TEST_KEY"
SONNET = "claude-sonnet-4-5"


def anthropic(url: str, **endpoint: Any) -> AnthropicProvider:
    given = {"base_url": url, "api_key": {"env": KEY_ENV}, "probe_timeout_s": 1.0, **endpoint}
    return AnthropicProvider.model_validate({"type": "anthropic", "endpoint": given})


def probe(url: str, *models: str, key: str = SECRET) -> ProbeReport:
    target = Target("claude", anthropic(url), frozenset(models or (SONNET,)))
    return asyncio.run(probe_once([target], env={KEY_ENV: key}))["claude"]


def add(fake: FakeServer, *models: str, **behaviour: Any) -> str:
    names = models or (SONNET,)
    return fake.add(
        "claude", kind=ANTHROPIC, models=[FakeModel(m) for m in names], api_key=SECRET, **behaviour
    )


# --- the spec ----------------------------------------------------------------------------------


def test_the_base_url_defaults_to_anthropics_api() -> None:
    spec = AnthropicProvider.model_validate({"type": "anthropic"})
    assert spec.endpoint.base_url == ANTHROPIC_API == "https://api.anthropic.com"


# --- the probe ---------------------------------------------------------------------------------


def test_the_probe_lists_models_with_x_api_key_and_never_an_authorization_header(
    fake: FakeServer,
) -> None:
    url = add(fake)
    report = probe(url)
    assert report.ok, report.detail
    assert report.models == {SONNET}
    (sent,) = fake.requests
    assert (sent.method, sent.path) == ("GET", "/v1/models")
    assert sent.headers["x-api-key"] == SECRET
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers


def test_the_probe_follows_the_pages_of_the_model_list_until_the_model_is_seen(
    fake: FakeServer,
) -> None:
    names = [f"claude-{i}" for i in range(7)]
    url = add(fake, *names, page_size=2)
    report = probe(url, "claude-5")
    assert report.ok, report.detail
    assert "claude-5" in report.models
    pages = [r.query.get("after_id") for r in fake.requests]
    assert pages == [None, "claude-1", "claude-3"]  # claude-5 is on the third page: no fourth


def test_a_model_anthropic_does_not_list_is_model_missing_with_an_anthropic_remedy(
    fake: FakeServer,
) -> None:
    url = add(fake)
    report = probe(url, "claude-nonexistent")
    assert report.ok, report.detail
    assert "/v1/models/claude-nonexistent" in fake.paths("claude")  # asked once by its id
    provider = ProviderView("claude", "anthropic", True, url, (KEY_ENV,), AnthropicDriver().remedy)
    route = RouteView("scoring", "claude", "claude-nonexistent", True, True)
    [verdict] = verdicts([route], [provider], {"claude": report}, 1, report.checked_at)
    assert verdict.reason is Reason.model_missing
    assert "it has: claude-sonnet-4-5" in verdict.detail
    assert verdict.remedy.startswith("use a model claude lists (GET /v1/models)")


def test_a_refused_key_is_auth_failed_and_its_value_is_never_shown(fake: FakeServer) -> None:
    url = add(fake)
    report = probe(url, key="sk-ant-wrong")
    assert report.reason is Reason.auth_failed
    assert "401" in report.detail and "authentication_error" in report.detail
    assert SECRET not in report.detail and "sk-ant-wrong" not in report.detail


def test_an_overloaded_api_is_a_server_error_saying_so(fake: FakeServer) -> None:
    url = add(fake, overloaded=True)
    report = probe(url)
    assert report.reason is Reason.server_error
    assert "529" in report.detail and "overloaded_error" in report.detail


def test_the_probe_never_runs_inference(fake: FakeServer) -> None:
    url = add(fake, *(f"claude-{i}" for i in range(3)), page_size=1)
    probe(url, "claude-2", "claude-9")
    assert {r.path for r in fake.requests} == {"/v1/models", "/v1/models/claude-9"}


# --- failures, as the worker sees them ---------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "transient"),
    [
        (429, "rate_limit_error", True),
        (529, "overloaded_error", True),
        (500, "api_error", True),
        (404, "not_found_error", False),
        (400, "invalid_request_error", False),
    ],
)
def test_429_and_529_are_transient_with_retry_after_and_4xx_are_not(
    status: int, kind: str, transient: bool
) -> None:
    body = json.dumps(anthropic_error(kind, "it failed")).encode()
    failure = AnthropicDriver().classify(status, body, "7")
    assert failure is not None
    assert failure.transient is transient
    assert failure.retry_after_s == (7.0 if transient else None)
    assert kind in failure.detail


# --- calls through `try` and the worker --------------------------------------------------------


@pytest.fixture
def scene(fake: FakeServer, tmp_path: Path, cli: Callable[..., Result]) -> Iterator[Scene]:
    (tmp_path / "config").mkdir()
    with migrated_database("sqlite", None, tmp_path) as url:
        yield Scene(url, tmp_path / "config", fake, cli)


def claude_config(url: str, params: str = "{temperature: 0}") -> str:
    return f"""\
version: 1
providers:
  claude:
    type: anthropic
    endpoint:
      base_url: "{url}"
      api_key: {{env: {KEY_ENV}}}
      probe_timeout_s: 1
      timeout_s: 10
routes:
  scoring:
    provider: claude
    model: {SONNET}
    params: {params}
"""


@pytest.fixture
def claude(scene: Scene, monkeypatch: pytest.MonkeyPatch) -> Scene:
    monkeypatch.setenv(KEY_ENV, SECRET)
    scene.apply(claude_config(add(scene.fake, chat=answering(0.7, "well sourced"))))
    return scene


def messages(fake: FakeServer) -> list[Any]:
    return [r for r in fake.requests if r.path == "/v1/messages"]


def test_try_asks_for_the_answer_tool_with_the_system_prompt_on_top_and_a_token_cap(
    claude: Scene,
) -> None:
    result = claude.run("try", "scoring", "The Eiffel Tower is in Paris.")
    assert result.code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["score", "0.7"]
    assert lines[2].startswith(f"answered by claude/{SONNET} in ")
    assert lines[2].endswith(" ms; tokens: 42 prompt + 9 completion")
    (sent,) = messages(claude.fake)
    body = sent.body
    assert body["max_tokens"] == DEFAULT_MAX_OUTPUT_TOKENS and body["temperature"] == 0
    assert body["system"]
    assert body["messages"] == [{"role": "user", "content": "The Eiffel Tower is in Paris."}]
    assert body["tool_choice"] == {"type": "tool", "name": "answer"}
    [tool] = body["tools"]
    assert tool["name"] == "answer" and tool["input_schema"]["type"] == "object"
    assert sent.headers["x-api-key"] == SECRET and "authorization" not in sent.headers


def test_the_routes_params_override_the_output_cap(claude: Scene) -> None:
    claude.apply(claude_config(claude.fake.base_url("claude"), "{max_tokens: 64}"))
    assert claude.run("try", "scoring", "x").code == 0
    assert messages(claude.fake)[-1].body["max_tokens"] == 64


def test_the_worker_scores_through_anthropic_and_stores_the_usage(claude: Scene) -> None:
    claude.enqueue("scoring", 3)
    stats = claude.drain("scoring", {KEY_ENV: SECRET})
    assert (stats.done, stats.dead) == (3, 0)
    for row in claude.rows().values():
        assert row["status"] == "done"
        assert (row["provider"], row["model"]) == ("claude", SONNET)
        assert row["result"] == {"score": 0.7, "rationale": "well sourced"}


def test_an_overloaded_api_is_retried_then_dead_with_its_error(claude: Scene) -> None:
    overloaded = anthropic_error("overloaded_error", "Overloaded")
    claude.fake.behaviours["claude"].chat = failing(529, overloaded)
    claude.enqueue("scoring", 1)
    stats = claude.drain("scoring", {KEY_ENV: SECRET})
    assert (stats.retried, stats.dead) == (1, 1)
    assert "server error 529" in claude.rows()["item-0"]["error"]


def test_a_model_anthropic_does_not_have_is_dead_without_a_retry(claude: Scene) -> None:
    claude.apply(claude_config(claude.fake.base_url("claude")).replace(SONNET, "claude-nope"))
    claude.enqueue("scoring", 1)
    stats = claude.drain("scoring", {KEY_ENV: SECRET})
    assert (stats.retried, stats.dead) == (0, 1)
    assert "not_found_error" in claude.rows()["item-0"]["error"]


def test_a_key_echoed_by_the_server_never_reaches_stored_errors_or_output(claude: Scene) -> None:
    echo = anthropic_error("invalid_request_error", f"x-api-key {SECRET} is malformed")
    claude.fake.behaviours["claude"].chat = failing(400, echo)
    tried = claude.run("try", "scoring", "x")
    assert tried.code != 0
    assert "invalid_request_error" in tried.output
    claude.enqueue("scoring", 1)
    claude.drain("scoring", {KEY_ENV: SECRET})
    stored = json.dumps(claude.rows(), default=str)
    assert "is malformed" in stored
    assert SECRET not in tried.output and SECRET not in stored
