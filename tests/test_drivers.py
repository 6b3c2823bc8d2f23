"""Provider drivers: every type, built in or from a plugin, is probed and called through its own
driver, and the generic code knows no type by its class or its name. The test plugin's `acme`
type (tests/plugin_pkg) is driven end to end against the fake server: probe, `try`, the worker.
"""

from __future__ import annotations

import ast
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.adapters.plugins import PluginError, load_registry
from reconciler.adapters.providers import http
from reconciler.adapters.providers.anthropic import AnthropicDriver
from reconciler.adapters.providers.driver import CallRequest, ProviderDriver
from reconciler.adapters.providers.ollama import OllamaDriver
from reconciler.adapters.providers.openai_compat import OpenAICompatibleDriver
from reconciler.core.scoring import DEFAULT_MAX_OUTPUT_TOKENS, DEFAULT_OUTPUT_SCHEMA
from reconciler.core.spec import AnthropicProvider, OllamaProvider, OpenAICompatibleProvider
from tests.conftest import ROOT, Result
from tests.fakeprovider import ACME, FakeModel, FakeServer, answering
from tests.plugin_install import GOOD_MODEL, PLUGIN_SITE, install_plugin
from tests.scoring_bed import Scene
from tests.scoring_worker import migrated_database

pytestmark = pytest.mark.timeout(120)

SECRET = "acme-planted-93b1f0-never-shown"
GENERIC = ("probe.py", "chat.py", "http.py", "egress.py", "bounded.py", "driver.py", "failure.py")
SPEC_CLASSES = {"OllamaProvider", "OpenAICompatibleProvider", "AnthropicProvider"}
BUILT_IN = {
    "ollama": (OllamaDriver(), OllamaProvider, ("options", "num_predict"), "num_predict"),
    "openai_compatible": (
        OpenAICompatibleDriver(),
        OpenAICompatibleProvider,
        ("max_tokens",),
        "max_tokens",
    ),
    "anthropic": (AnthropicDriver(), AnthropicProvider, ("max_tokens",), "max_tokens"),
}


def names_in(path: Path) -> set[str]:
    """Every name and string constant in a module's code (docstrings included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.alias):
            found.add(node.asname or node.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(node.value)
    return found


@pytest.mark.parametrize("module", GENERIC)
def test_the_generic_provider_code_names_no_spec_class_and_no_type(module: str) -> None:
    found = names_in(ROOT / "reconciler" / "adapters" / "providers" / module)
    assert not found & SPEC_CLASSES
    assert not found & {"ollama", "openai_compatible", "anthropic"}


@pytest.mark.parametrize("module", ["service/ask.py", "service/readiness.py", "core/readiness.py"])
def test_the_use_cases_and_the_verdicts_name_no_provider_type(module: str) -> None:
    found = names_in(ROOT / "reconciler" / module)
    assert not found & SPEC_CLASSES
    assert not found & {"ollama", "openai_compatible", "anthropic"}


def test_every_registered_type_has_a_driver() -> None:
    registry = load_registry()
    assert {"ollama", "openai_compatible", "anthropic"} <= set(registry.names())
    for provider_type in registry:
        assert isinstance(provider_type.driver, ProviderDriver), provider_type.name


@pytest.mark.parametrize("type_name", sorted(BUILT_IN))
def test_each_built_in_call_caps_output_tokens_unless_the_route_says(type_name: str) -> None:
    driver, model, where, name = BUILT_IN[type_name]
    spec = model.model_validate({"type": type_name, "endpoint": {"base_url": "http://h:1"}})
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]

    def cap(params: dict[str, Any]) -> Any:
        call = CallRequest(spec, "http://h:1/", "m", messages, DEFAULT_OUTPUT_SCHEMA, params)
        body: Any = driver.build_call(call).body
        for key in where:
            body = body[key]
        return body

    assert cap({}) == DEFAULT_MAX_OUTPUT_TOKENS
    assert cap({name: 64}) == 64


@pytest.mark.parametrize(
    ("written", "sent"),
    [("5m", "5m"), (300, "300s"), ("300", "300s"), (0, "0"), ("0", "0"), (-1, -1), ("-1", -1)],
)
def test_ollama_is_sent_keep_alive_in_a_form_it_parses(written: Any, sent: Any) -> None:
    # Ollama parses text with Go's time.ParseDuration: "300" and "-1" (no unit) are refused
    # there, so whole seconds go as "300s" and "keep loaded" as the number -1.
    endpoint = {"base_url": "http://h:1"}
    spec = OllamaProvider.model_validate(
        {"type": "ollama", "endpoint": endpoint, "keep_alive": written}
    )
    call = CallRequest(spec, "http://h:1/", "m", [], DEFAULT_OUTPUT_SCHEMA, {})
    assert OllamaDriver().build_call(call).body["keep_alive"] == sent


# --- plugins -----------------------------------------------------------------------------------


@pytest.fixture
def on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    def install(source: str) -> None:
        monkeypatch.syspath_prepend(str(install_plugin(tmp_path / "site", source)))

    yield install
    sys.modules.pop("acme_broken", None)


def test_a_plugin_type_without_a_driver_is_refused_naming_the_package(
    on_path: Callable[[str], None],
) -> None:
    on_path(GOOD_MODEL + "PROVIDER_TYPE = ProviderType('acme', Acme)\n")
    with pytest.raises(PluginError) as refused:
        load_registry()
    message = str(refused.value)
    assert "'acme = acme_broken:PROVIDER_TYPE' (acme-broken 1.0)" in message
    assert "type 'acme' has no driver" in message
    assert message.endswith("; fix or uninstall acme-broken")


def test_a_plugin_driver_missing_methods_is_refused_saying_which(
    on_path: Callable[[str], None],
) -> None:
    driver = "class Half:\n    def auth_headers(self, api_key): return {}\n"
    on_path(GOOD_MODEL + driver + "PROVIDER_TYPE = ProviderType('acme', Acme, '', Half())\n")
    with pytest.raises(PluginError, match="lacks probe, build_call, read_answer, classify, remedy"):
        load_registry()


ACME_CONFIG = """\
version: 1
providers:
  acme-eu:
    type: acme
    endpoint:
      base_url: "{url}"
      api_key: {{env: ACME_API_KEY}}
      probe_timeout_s: 1
      timeout_s: 10
    region: eu
    deployment: news-prod
routes:
  scoring:
    provider: acme-eu
    model: {model}
    required: true
"""


@pytest.fixture
def acme(
    fake: FakeServer, tmp_path: Path, cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Scene]:
    """The acme plugin installed in this process, its fake server, and a route to it."""
    monkeypatch.syspath_prepend(str(PLUGIN_SITE))
    monkeypatch.setenv("ACME_API_KEY", SECRET)
    url = fake.add(
        "acme", kind=ACME, models=[FakeModel("acme-large")], api_key=SECRET, chat=answering(0.4)
    )
    (tmp_path / "config").mkdir()
    with migrated_database("sqlite", None, tmp_path) as database:
        scene = Scene(database, tmp_path / "config", fake, cli)
        scene.apply(ACME_CONFIG.format(url=url, model="acme-large"))
        yield scene
    sys.modules.pop("acme_provider", None)


def test_a_plugin_type_is_probed_ready_through_its_own_driver(acme: Scene) -> None:
    result = acme.run("status", "--probe", "--format", "json")
    assert result.code == 0, result.output
    [verdict] = json.loads(result.stdout)["tasks"]
    assert (verdict["status"], verdict["served_by"]) == ("ready", "acme-eu/acme-large")
    assert acme.fake.paths("acme") == ["/v1/deployments/news-prod/models"]


def test_a_plugin_types_missing_model_gets_the_plugins_remedy(acme: Scene) -> None:
    acme.apply(ACME_CONFIG.format(url=acme.fake.base_url("acme"), model="acme-huge"))
    result = acme.run("status", "--probe")
    assert result.code != 0
    assert "enable acme-huge on the Acme deployment of acme-eu" in result.output
    assert "is a acme server" not in result.output


def test_try_and_the_worker_score_through_a_plugin_type(acme: Scene) -> None:
    tried = acme.run("try", "scoring", "The Eiffel Tower is in Paris.")
    assert tried.code == 0, tried.output
    assert tried.stdout.splitlines()[0].split() == ["score", "0.4"]
    acme.enqueue("scoring", 2)
    stats = acme.drain("scoring", {"ACME_API_KEY": SECRET})
    assert (stats.done, stats.dead) == (2, 0)
    assert {row["provider"] for row in acme.rows().values()} == {"acme-eu"}
    calls = [r for r in acme.fake.requests if r.path.endswith("/generate")]
    assert len(calls) == 3
    assert all(r.headers["authorization"] == f"Bearer {SECRET}" for r in calls)
    body = calls[0].body
    assert body["max_output_tokens"] == DEFAULT_MAX_OUTPUT_TOKENS
    assert body["instructions"] and body["conversation"][-1]["role"] == "user"
    assert calls[0].path == "/v1/deployments/news-prod/generate"


def test_a_client_resolves_each_path_once_and_anew_for_another_base_url() -> None:
    """A kept client's URLs are resolved once per path (probes ask for the same few every
    round), never reused across base URLs, and only a few are kept per client."""
    client = httpx.AsyncClient(base_url="http://127.0.0.1:9/v1")
    models = http._joined(client, "models")
    assert str(models) == "http://127.0.0.1:9/v1/models" == str(client.base_url.join("models"))
    assert http._joined(client, "models") is models
    assert str(http._joined(client, "/models")) == "http://127.0.0.1:9/v1/models"
    absolute = "http://127.0.0.1:9/health"
    assert str(http._joined(client, absolute)) == absolute
    client.base_url = httpx.URL("http://127.0.0.1:10/")
    assert str(http._joined(client, "models")) == "http://127.0.0.1:10/models"
    for page in range(40):
        path = f"v1/models?after_id={page}"
        assert str(http._joined(client, path)) == f"http://127.0.0.1:10/v1/models?after_id={page}"
    assert len(http._JOINS[client][1]) == http._JOINS_KEPT
