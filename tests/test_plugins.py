"""Third-party provider types, registered through the `reconciler.providers` entry points.

`tests/plugin_pkg/` looks like a site-packages directory after `pip install acme-provider`: the
module `acme_provider` and its `acme_provider-1.0.dist-info/` with the entry point. Broken
plugins are written the same way into a directory of their own. Each scenario runs
`python -m reconciler` as a separate process with that directory on PYTHONPATH, as a user's
installation would; those processes are started together, once, to keep the module fast.
The matrix of broken plugins runs in this process, with the plugin's directory on sys.path.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import Result, run_reconciler
from tests.plugin_install import GOOD_MODEL, PLUGIN_SITE, install_plugin

CONFIG = """\
version: 1
providers:
  local:
    type: ollama
    endpoint: {base_url: "http://127.0.0.1:11434"}
  acme-eu:
    type: acme
    endpoint:
      base_url: https://llm.acme.example/v1
      api_key: {env: ACME_API_KEY}
    region: eu
    deployment: news-prod
routes:
  scoring:
    provider: acme-eu
    model: acme-large
    fallbacks:
      - {provider: local, model: "llama3.1:8b"}
"""
TYPO = CONFIG.replace("    region: eu", "    regoin: eu")  # line 11, column 5

BROKEN_PLUGINS = {
    "raises-on-import": (
        "raise RuntimeError('the acme SDK is not installed')\n",
        "failed to import: RuntimeError: the acme SDK is not installed",
    ),
    "not-a-provider-type": (
        "def PROVIDER_TYPE():\n    return None\n",
        "is not a reconciler ProviderType",
    ),
    "model-is-not-a-model": (
        "from reconciler.core.registry import ProviderType\n"
        "PROVIDER_TYPE = ProviderType('acme', dict)\n",
        "config_model <class 'dict'> is not a subclass of reconciler's ProviderSpec",
    ),
    "model-is-not-a-provider-spec": (
        "from pydantic import BaseModel\n"
        "from reconciler.core.registry import ProviderType\n"
        "class Acme(BaseModel):\n    deployment: str = 'x'\n"
        "PROVIDER_TYPE = ProviderType('acme', Acme)\n",
        "is not a subclass of reconciler's ProviderSpec",
    ),
    "model-declares-another-type": (
        GOOD_MODEL + "PROVIDER_TYPE = ProviderType('acme2', Acme)\n",
        "config_model Acme must declare type: Literal['acme2']",
    ),
    "name-taken": (
        GOOD_MODEL.replace('"acme"', '"ollama"') + "PROVIDER_TYPE = ProviderType('ollama', Acme)\n",
        "reuses the type name 'ollama'",
    ),
}
BROKEN_ENTRY = "'acme = acme_broken:PROVIDER_TYPE' (acme-broken 1.0)"


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    """`python -m reconciler` per scenario, keyed by name; the processes run concurrently."""
    root = tmp_path_factory.mktemp("plugins")
    for directory, text in (("config", CONFIG), ("typo", TYPO)):
        (root / directory).mkdir()
        (root / directory / "providers.yaml").write_text(text)
    broken = install_plugin(root / "broken", BROKEN_PLUGINS["raises-on-import"][0])
    scenarios = {
        "valid": (["validate", "config"], PLUGIN_SITE),
        "typo": (["validate", "typo"], PLUGIN_SITE),
        "no-plugin": (["validate", "config"], None),
        "raises-on-import": (["validate", "config"], broken),
    }

    def run(args: list[str], site: Path | None) -> Result:
        return run_reconciler(*args, env={"PYTHONPATH": str(site or "")}, cwd=root)

    with ThreadPoolExecutor(max_workers=len(scenarios)) as pool:
        futures = {name: pool.submit(run, *scenario) for name, scenario in scenarios.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture
def on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Path]]:
    """Install a broken plugin into this process's path; forget its module afterwards."""

    def install(source: str) -> Path:
        site = install_plugin(tmp_path / "site", source)
        monkeypatch.syspath_prepend(str(site))
        return site

    yield install
    sys.modules.pop("acme_broken", None)


def test_a_config_using_a_plugin_provider_type_validates(processes: dict[str, Result]) -> None:
    result = processes["valid"]
    assert result.code == 0, result.output
    assert "valid: 2 provider(s), 1 route(s) in 1 file(s)" in result.stdout
    assert result.stderr == ""


def test_a_typo_in_a_plugin_field_is_reported_at_its_place_with_a_suggestion(
    processes: dict[str, Result],
) -> None:
    result = processes["typo"]
    assert result.code == 1
    lines = result.stderr.splitlines()
    place = "providers.yaml:11:5: providers.acme-eu.regoin: unknown field 'regoin'"
    assert any(line.endswith(place) for line in lines), result.stderr
    assert "    hint: did you mean 'region'?" in lines
    assert "1 problem(s) found in 1 file(s)." in result.stderr


def test_without_the_plugin_the_type_is_an_error_listing_the_known_types(
    processes: dict[str, Result],
) -> None:
    result = processes["no-plugin"]
    assert result.code == 1
    lines = result.stderr.splitlines()
    place = "providers.yaml:7:11: providers.acme-eu.type: unknown provider type 'acme'"
    assert any(line.endswith(place) for line in lines), result.stderr
    assert "registered: anthropic, ollama, openai_compatible" in result.stderr


def test_a_plugin_that_raises_on_import_is_a_clear_error_without_a_traceback(
    processes: dict[str, Result],
) -> None:
    result = processes["raises-on-import"]
    assert result.code == 1
    assert result.stderr == (
        f"error: provider plugin {BROKEN_ENTRY} failed to import: RuntimeError: the acme SDK "
        "is not installed; fix or uninstall acme-broken\n"
    )
    assert "Traceback" not in result.output


@pytest.mark.parametrize("broken", sorted(BROKEN_PLUGINS))
@pytest.mark.parametrize("command", ["validate", "schema"])
def test_a_broken_plugin_is_a_clear_error_naming_it(
    broken: str,
    command: str,
    on_path: Callable[[str], Path],
    cli: Callable[..., Result],
    write_config: Callable[..., Path],
) -> None:
    source, reason = BROKEN_PLUGINS[broken]
    on_path(source)
    args = (
        ["validate", write_config({"providers.yaml": CONFIG})]
        if command == "validate"
        else ["schema"]
    )
    result = cli(*args)
    assert result.code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: provider plugin {BROKEN_ENTRY}"), result.stderr
    assert reason in result.stderr
    assert "uninstall acme-broken" in result.stderr


def test_the_json_schema_has_a_branch_for_the_plugin_type(
    monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Result]
) -> None:
    monkeypatch.syspath_prepend(str(PLUGIN_SITE))
    try:
        result = cli("schema")
    finally:
        sys.modules.pop("acme_provider", None)
    assert result.code == 0, result.output
    acme = json.loads(result.stdout)["$defs"]["AcmeProvider"]
    assert acme["properties"]["type"]["const"] == "acme"
    assert acme["properties"]["region"]["enum"] == ["eu", "us"]
    assert acme["additionalProperties"] is False
