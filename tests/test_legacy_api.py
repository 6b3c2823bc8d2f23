"""What clients and bookmarks of the replaced application get: its API, its settings pages.

`/api/ollama/config` answers in the old shape from the `scoring` route and refuses writes with
the file and line to edit; `/settings/ollama` and `/settings/llm-providers` lead to the providers
view. Each is checked on a running daemon, or on the app over a real database, on both engines.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, insert

from reconciler import __version__
from reconciler.adapters.db import migrate, readiness_store
from reconciler.adapters.db.engine import make_engine
from reconciler.adapters.db.tables import ollama_settings, providers, routes
from reconciler.core.readiness import Reason, Status, Verdict
from reconciler.daemon.metrics import Metrics
from reconciler.daemon.state import DaemonState
from reconciler.daemon.web import create_app, host_policy
from reconciler.service.catalog import NOT_SHOWN
from tests.daemon_harness import Daemon
from tests.fakeprovider import OPENAI, FakeModel, FakeServer
from tests.html_checks import LOADS_FROM_ELSEWHERE, TextOf

pytestmark = pytest.mark.timeout(120)

KEY_ENV = "RECONCILER_TEST_LEGACY_KEY"
SECRET = "planted-7c1e9f-never-shown"
WRITES = ["PUT", "POST", "PATCH"]
SETTINGS_PAGES = ["/settings/ollama", "/settings/llm-providers"]
LEGACY_ROW = {
    "id": 1,
    "base_url": "http://10.0.0.5:11434/",
    "model": "llama3.1:8b",
    "enabled": True,
    "updated_at": datetime(2025, 3, 1, 12, 0),
}


def config_files(local: str, remote: str, scoring: bool = True) -> dict[str, str]:
    providers_yaml = f"""\
version: 1
providers:
  local:
    type: ollama
    endpoint:
      base_url: "{local}"
      timeout_s: 30
      connect_timeout_s: 2
      probe_timeout_s: 1
      headers: {{X-Title: reconciler-tests, X-Api-Key: {{env: {KEY_ENV}}}}}
    keep_alive: 10m
  remote:
    type: openai_compatible
    endpoint: {{base_url: "{remote}", api_key: {{env: {KEY_ENV}}}, probe_timeout_s: 1}}
  idle:
    type: ollama
    enabled: false
    endpoint: {{base_url: "http://127.0.0.1:9"}}
"""
    routes_yaml = """\
version: 1
routes:
  summarization: {provider: remote, model: gpt-4o-mini}
  translation: {provider: local, model: "qwen2.5:7b", enabled: false}
"""
    if scoring:
        routes_yaml += """\
  scoring:
    provider: local
    model: "llama3.1:8b"
    required: true
    fallbacks: [{provider: remote, model: gpt-4o-mini}]
"""
    return {"providers.yaml": providers_yaml, "routes.yaml": routes_yaml}


def line_of(text: str, key: str) -> int:
    """The line of `text` that declares `key` (`  scoring:`), counted from 1."""
    return next(n for n, line in enumerate(text.splitlines(), 1) if line.startswith(key))


@pytest.fixture
def providers_up(fake: FakeServer) -> tuple[str, str]:
    """A local Ollama with the scoring model, and a remote server that wants the planted key."""
    local = fake.add("local", models=[FakeModel("llama3.1:8b")])
    remote = fake.add("remote", kind=OPENAI, api_key=SECRET, models=[FakeModel("gpt-4o-mini")])
    return local, remote


@pytest.fixture
def daemon_with(
    start_daemon: Callable[..., Daemon], write_config: Callable[..., Path], db_url: str
) -> Callable[[dict[str, str]], Daemon]:
    def start(files: dict[str, str]) -> Daemon:
        directory = write_config(files)
        daemon = start_daemon(db_url, directory, "--probe-interval", "1", env={KEY_ENV: SECRET})
        daemon.wait_generation(1)
        return daemon

    return start


def send(daemon: Daemon, method: str, path: str) -> httpx.Response:
    body = {"base_url": "http://10.9.9.9:11434", "model": "other:1b", "enabled": False}
    return httpx.request(method, daemon.url + path, json=body, timeout=5, trust_env=False)


# --- on a running daemon ----------------------------------------------------------------------


def test_the_legacy_config_answers_in_the_old_shape_and_writes_get_409_naming_file_and_line(
    daemon_with: Callable[[dict[str, str]], Daemon], providers_up: tuple[str, str]
) -> None:
    files = config_files(*providers_up)
    daemon = daemon_with(files)
    answer = daemon.get("/api/ollama/config")
    assert answer.status_code == 200
    body = answer.json()
    route_line = line_of(files["routes.yaml"], "  scoring:")
    provider_line = line_of(files["providers.yaml"], "  local:")
    assert body["source"].endswith(f"routes.yaml:{route_line}")
    assert body["provider_source"].endswith(f"providers.yaml:{provider_line}")
    assert isinstance(body["updated_at"], str)
    values = {k: v for k, v in body.items() if k not in ("source", "provider_source")}
    assert values | {"updated_at": "-"} == {
        "updated_at": "-",
        "base_url": providers_up[0],
        "model": "llama3.1:8b",
        "enabled": True,
        "timeout_s": 30.0,
        "connect_timeout_s": 2.0,
        "verify_tls": True,
        "keep_alive": "10m",
        "headers": {"X-Title": "reconciler-tests", "X-Api-Key": {"env": KEY_ENV}},
        "api_key": None,
        "task": "scoring",
        "provider": "local",
        "provider_type": "ollama",
        "managed_by": "config",
    }
    for method in WRITES:
        refused = send(daemon, method, "/api/ollama/config")
        assert refused.status_code == 409, method
        conflict = refused.json()
        assert (conflict["error"], conflict["run"]) == ("managed_as_code", "reconciler apply")
        assert f"routes.yaml at line {route_line} (routes.scoring)" in conflict["detail"]
        assert f"providers.yaml at line {provider_line} (providers.local)" in conflict["detail"]
        edits = {e["what"]: (Path(e["file"]).name, e["line"]) for e in conflict["edit"]}
        assert edits == {
            "routes.scoring": ("routes.yaml", route_line),
            "providers.local": ("providers.yaml", provider_line),
        }
    assert daemon.get("/api/ollama/config").json() == body


def test_without_a_scoring_route_the_legacy_config_is_404_saying_how_to_declare_it(
    daemon_with: Callable[[dict[str, str]], Daemon],
    providers_up: tuple[str, str],
) -> None:
    daemon = daemon_with(config_files(*providers_up, scoring=False))
    answer = daemon.get("/api/ollama/config")
    assert answer.status_code == 404
    body = answer.json()
    assert (body["error"], body["task"]) == ("no_route", "scoring")
    assert "routes: {scoring: {provider: " in body["detail"]
    assert "reconciler apply" in body["detail"]
    refused = send(daemon, "PUT", "/api/ollama/config")
    assert refused.status_code == 409
    assert "declare routes.scoring" in refused.json()["detail"]


def test_the_providers_view_shows_each_provider_its_routes_its_last_probe_and_no_secret(
    daemon_with: Callable[[dict[str, str]], Daemon], providers_up: tuple[str, str]
) -> None:
    files = config_files(*providers_up)
    daemon = daemon_with(files)
    # remote answers only with the key; a disabled route probes nothing
    wanted = {"scoring": "ready", "summarization": "ready", "translation": "not_ready"}
    daemon.wait_for(
        lambda: (
            {t["task"]: t["status"] for t in daemon.get("/api/v1/readiness").json()["tasks"]}
            == wanted
        ),
        what=f"the verdicts {wanted}",
    )
    for old in SETTINGS_PAGES:
        moved = daemon.get(old)
        assert (moved.status_code, moved.headers["location"]) == (308, "/providers"), old
    answer = daemon.get("/providers")
    assert answer.status_code == 200
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert not LOADS_FROM_ELSEWHERE.search(answer.text)
    text = TextOf.of(answer.text)
    provider_line = line_of(files["providers.yaml"], "  local:")
    for expected in [
        "local ollama enabled",
        "remote openai_compatible enabled",
        "idle ollama disabled",
        f"providers.yaml:{provider_line} managed_by config",
        "scoring primary: llama3.1:8b",
        "scoring fallback 1: gpt-4o-mini",
        "summarization primary: gpt-4o-mini",
        "translation primary: qwen2.5:7b (route disabled)",
        f"header X-Api-Key : {{env: {KEY_ENV}}}",
        f"api_key {{env: {KEY_ENV}}}",
        "keep_alive 10m",
        "no route none recorded",  # idle: used by nothing, never probed
        f"reconciler {__version__}",
    ]:
        assert expected in text, expected
    for task in ["scoring", "summarization"]:  # local's probe, then remote's
        assert re.search(rf"ready \d+ ms \d+s ago, for task {task}\b", text), task
    for path in ["/providers", "/api/ollama/config", "/api/v1/providers", "/", "/docs"]:
        assert SECRET not in daemon.get(path).text, path
    assert daemon.status()["version"] == __version__
    status_page = daemon.get("/").text
    assert f"reconciler {__version__}" in TextOf.of(status_page)
    assert "href='/providers'" in status_page


# --- on the app, over a database written by hand ----------------------------------------------


class App:
    """The daemon's HTTP app over `engine`, asked in this process."""

    def __init__(self, engine: Engine) -> None:
        state = DaemonState(config_dir="/srv/reconciler/config", database="test")
        self.app = create_app(engine, state, Metrics(), host_policy("127.0.0.1", ()))

    def ask(self, method: str, path: str, host: str = "127.0.0.1") -> httpx.Response:
        async def run() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as c:
                return await c.request(method, path, json={"model": "other:1b"})

        return asyncio.run(run())


@pytest.fixture
def legacy_engine(db_url: str) -> Iterator[Engine]:
    """A database an older deployment left, with its `ollama_settings` row, then upgraded."""
    engine = make_engine(db_url)
    ollama_settings.create(engine)
    with engine.begin() as conn:
        conn.execute(ollama_settings.insert(), [LEGACY_ROW])
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


def test_a_backfilled_legacy_row_is_answered_as_unmanaged_and_a_write_points_to_export(
    legacy_engine: Engine,
) -> None:
    app = App(legacy_engine)
    body = app.ask("GET", "/api/ollama/config").json()
    assert body["managed_by"] != "config"
    assert (body["source"], body["provider_source"]) == (None, None)
    assert {k: body[k] for k in ("base_url", "model", "enabled", "provider")} == {
        "base_url": "http://10.0.0.5:11434",
        "model": "llama3.1:8b",
        "enabled": True,
        "provider": "ollama",
    }
    assert (body["timeout_s"], body["keep_alive"], body["headers"]) == (60.0, "5m", {})
    for method in WRITES:
        refused = app.ask(method, "/api/ollama/config")
        assert refused.status_code == 409, method
        assert refused.json()["run"] == "reconciler export --out DIR"
        assert "`reconciler export --out DIR`" in refused.json()["detail"]
    text = TextOf.of(app.ask("GET", "/providers").text)
    assert "ollama ollama enabled" in text
    assert f"no file; adopt it with reconciler export managed_by {body['managed_by']}" in text
    assert "scoring primary: llama3.1:8b" in text


def test_an_empty_database_has_no_legacy_config_and_an_empty_providers_view(
    engine: Engine,
) -> None:
    app = App(engine)
    missing = app.ask("GET", "/api/ollama/config")
    assert missing.status_code == 404
    assert "/srv/reconciler/config" in missing.json()["detail"]
    assert "The database holds no providers." in app.ask("GET", "/providers").text
    for path in ["/providers", "/api/ollama/config", *SETTINGS_PAGES]:
        assert app.ask("GET", path, host="rebound.example").status_code == 421, path
    legacy = app.ask("GET", "/openapi.json").json()["paths"]["/api/ollama/config"]
    assert sorted(legacy) == ["get", "patch", "post", "put"]
    assert all(operation["deprecated"] for operation in legacy.values())


HOSTILE = "<script>alert(1)</script>"
LITERAL = "literal-credential-in-a-row"


def _hostile_rows(engine: Engine) -> None:
    """A provider, a route and a verdict written by hand: markup, escapes, literal credentials."""
    now = datetime.now(UTC)
    made = {"managed_by": "manual", "created_at": now, "updated_at": now}
    endpoint = {
        "base_url": "http://127.0.0.1:9/<img src=x onerror=alert(1)>",
        "headers": {
            "Authorization": f"Bearer {LITERAL}",
            "X-Note": "<svg onload=alert(1)>",
            "X-Custom-Token": LITERAL,
        },
        "api_key": LITERAL,
    }
    row = {"name": HOSTILE, "type": "<b>odd</b>", "enabled": True, "protect": False}
    route = {"task": "scoring", "provider": HOSTILE, "model": "\x1b[31m<i>m</i>", "enabled": True}
    route |= {"required": True, "protect": False, "params": {}, "fallbacks": []}
    source = {"source_file": "</code><script>x</script>", "source_line": 3}
    verdict = Verdict(
        task="scoring",
        status=Status.not_ready,
        reason=Reason.model_missing,
        remedy="pull it",
        detail="missing",
        provider=HOSTILE,
        model="m",
        required=True,
        generation=1,
        checked_at=now,
        latency_ms=12.4,
    )
    with engine.begin() as conn:
        plugin = {"access_token": LITERAL, "max_tokens": 64, "accessToken": LITERAL}
        plugin |= {
            "clientSecret": LITERAL,
            "passphrase": LITERAL,
            "nested": [{"authToken": LITERAL}],
        }
        plugin |= {"mirror": f"https://user:{LITERAL}@127.0.0.1:9/v1?key={LITERAL}"}
        config = {"endpoint": endpoint, "plugin": plugin}
        conn.execute(insert(providers), [row | made | source | {"config": config}])
        conn.execute(insert(routes), [route | made])
        readiness_store.save_verdicts(conn, [verdict])


def test_the_providers_view_escapes_what_a_row_holds_and_never_shows_a_literal_credential(
    engine: Engine,
) -> None:
    _hostile_rows(engine)
    app = App(engine)
    page = app.ask("GET", "/providers").text
    for raw in ["<script", "<img", "<svg", "<b>odd", "<i>m", "\x1b"]:
        assert raw not in page, raw
    assert LITERAL not in page
    text = TextOf.of(page)
    for shown in [HOSTILE, "<b>odd</b>", "\\x1b[31m<i>m</i>", "</code><script>x</script>:3"]:
        assert shown in text, shown
    assert f"header Authorization : {NOT_SHOWN}" in text and f"api_key {NOT_SHOWN}" in text
    assert "not_ready model_missing 12 ms" in text and "for task scoring" in text
    legacy = app.ask("GET", "/api/ollama/config")
    assert LITERAL not in legacy.text
    body = legacy.json()
    assert (body["provider"], body["model"]) == (HOSTILE, "\x1b[31m<i>m</i>")
    assert body["headers"]["Authorization"] == NOT_SHOWN and body["api_key"] == NOT_SHOWN
    api = app.ask("GET", "/api/v1/providers")
    assert LITERAL not in api.text
    (served,) = api.json()
    assert served["config"]["endpoint"]["api_key"] == NOT_SHOWN
    assert served["config"]["endpoint"]["headers"]["Authorization"] == NOT_SHOWN
    assert served["config"]["endpoint"]["headers"]["X-Note"] == "<svg onload=alert(1)>"
    assert served["config"]["plugin"] == {
        "access_token": NOT_SHOWN,
        "max_tokens": 64,
        "accessToken": NOT_SHOWN,
        "clientSecret": NOT_SHOWN,
        "passphrase": NOT_SHOWN,
        "nested": [{"authToken": NOT_SHOWN}],
        "mirror": "https://127.0.0.1:9/v1 (user info and query not shown)",
    }
    assert served["config"]["endpoint"]["headers"]["X-Custom-Token"] == NOT_SHOWN
