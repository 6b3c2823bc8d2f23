"""The daemon's HTTP server as a hostile network sees it: Host names, binds, pages, passwords."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from reconciler import logs
from reconciler.adapters import secrets
from reconciler.daemon.web import (
    HostAllowList,
    exposure_warning,
    host_name,
    host_policy,
    is_loopback,
    parse_allow_hosts,
)
from reconciler.errors import ReconcilerError, StateError
from reconciler.service.database import open_database, safe_url, url_secrets
from reconciler.settings import LogFormat
from tests.builders import provider_file, routes_file
from tests.conftest import Result, run_reconciler
from tests.daemon_harness import Daemon, free_port
from tests.fakeprovider import FakeModel, FakeServer
from tests.html_checks import LOADS_FROM_ELSEWHERE

pytestmark = pytest.mark.timeout(90)

PASSWORD = "hunter2secret"
USER_PASSWORD = "userpart5secret"
PAGES = ["/", "/docs"]
EVERY_PATH = [*PAGES, "/healthz", "/readyz", "/readyz/tasks", "/metrics", "/openapi.json"]
EVERY_PATH += ["/api/v1/status", "/api/v1/readiness", "/api/v1/providers", "/api/v1/routes"]


def ask(daemon: Daemon, path: str, host: str | None = None) -> httpx.Response:
    headers = {"Host": host} if host is not None else {}
    return httpx.get(daemon.url + path, headers=headers, timeout=5, trust_env=False)


@pytest.fixture
def config(write_config: Callable[..., Path], fake: FakeServer) -> Path:
    url = fake.add("local", models=[FakeModel("llama3.1:8b")])
    return write_config({"providers.yaml": provider_file(url), "routes.yaml": routes_file()})


# --- the Host allow-list ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost", "localhost"),
        ("LocalHost.:8787", "localhost"),
        ("127.0.0.1:8787", "127.0.0.1"),
        ("[::1]:8787", "[::1]"),
        ("[::1]", "[::1]"),
        ("status.example.com", "status.example.com"),
        ("", None),
        ("::1", None),
        ("[::1", None),
        ("evil.example:http", None),
        ("evil example", None),
        ("user@evil.example", None),
        ("http://status.example.com", None),
    ],
)
def test_a_host_header_is_reduced_to_its_lower_cased_name_or_refused(
    header: str, name: str | None
) -> None:
    assert host_name(header) == name


def test_the_default_allow_list_is_loopback_names_ip_addresses_and_the_bound_name() -> None:
    policy = host_policy("status.internal", ())
    for allowed in ["localhost", "localhost:9", "127.0.0.1:8787", "[::1]:1", "10.0.0.7:8787"]:
        assert policy.allows(allowed), allowed
    assert policy.allows("status.internal:8787")
    for refused in ["evil.example", "127.0.0.1.nip.io", "localhost.evil.example", "[::1"]:
        assert not policy.allows(refused), refused
    assert not host_policy("0.0.0.0", ()).allows("evil.example")
    assert host_policy("::", ["*"]).allows("anything.example")


def test_allow_host_values_may_be_repeated_or_comma_separated_and_bad_ones_are_refused() -> None:
    given = ["status.example.com", " ops.example.org:8443, Status.Example.com ,", "*"]
    assert parse_allow_hosts(given) == ("status.example.com", "ops.example.org", "*")
    for bad in ["http://status.example.com", "a b", "[::1"]:
        with pytest.raises(StateError, match="--allow-host"):
            parse_allow_hosts([bad])


def test_a_daemon_answers_allowed_host_names_and_refuses_others_with_421(
    start_daemon: Callable[..., Daemon], config: Path, sqlite_url: str
) -> None:
    extra = ("--allow-host", "status.example.com", "--allow-host", "ops.example.org:8443")
    daemon = start_daemon(sqlite_url, config, *extra)
    port = daemon.port
    allowed = [None, "localhost", f"localhost:{port}", f"[::1]:{port}", "127.0.0.1"]
    allowed += ["STATUS.example.com.", f"status.example.com:{port}", "ops.example.org", "10.0.0.7"]
    refused = ["evil.example", f"evil.example:{port}", f"127.0.0.1.nip.io:{port}", "localhost.evil"]
    refused += ["status.example.com.evil.example", "ops.example.org.evil.example:8443"]
    for path in ["/healthz", "/api/v1/status", "/", "/docs", "/metrics"]:
        for host in allowed:
            assert ask(daemon, path, host).status_code == 200, (path, host)
        for host in refused:
            answer = ask(daemon, path, host)
            assert answer.status_code == 421, (path, host)
            body = answer.json()
            assert body["error"] == "host_not_allowed" and body["host"] == host
            assert "--allow-host NAME" in body["detail"]
    assert daemon.stop() == 0


def test_a_refused_host_is_shown_escaped_and_bounded() -> None:
    async def hello(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("hello")(scope, receive, send)

    async def ask_twice() -> tuple[httpx.Response, httpx.Response]:
        app = HostAllowList(hello, host_policy("127.0.0.1", ()))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            forged = await client.get("/", headers={"Host": "evil\x1b[31m." + "x" * 500})
            return forged, await client.get("/")

    forged, plain = asyncio.run(ask_twice())
    assert plain.text == "hello"
    assert forged.status_code == 421
    shown = forged.json()["host"]
    assert "\x1b" not in shown and shown.startswith("evil\\x1b[31m.xxx")
    assert len(shown) < 150


# --- binding beyond loopback ------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "fd00::5", "status.lan"])
def test_binding_beyond_loopback_is_warned_about_in_one_line(host: str) -> None:
    warning = exposure_warning(host, 8787, host_policy(host, ["ops.example.org"]))
    assert warning is not None and "\n" not in warning
    assert "reachable from other hosts" in warning
    assert "Host allow-list: " in warning and "ops.example.org" in warning
    assert "--allow-host NAME" in warning


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_binding_loopback_is_not_warned_about(host: str) -> None:
    assert is_loopback(host)
    assert exposure_warning(host, 8787, host_policy(host, ())) is None


def test_a_daemon_bound_to_every_address_warns_and_still_checks_the_host(
    start_daemon: Callable[..., Daemon], config: Path, sqlite_url: str
) -> None:
    # Binding is not traffic: the test only ever connects to 127.0.0.1.
    port = free_port()
    env = {"RECONCILER_ALLOW_HOSTS": "status.example.com, ops.example.org"}
    daemon = start_daemon(
        sqlite_url, config, "--http", f"0.0.0.0:{port}", env=env, wait_healthy=False
    )
    daemon.port = port
    daemon.wait_for(lambda: daemon.get("/healthz").status_code == 200, 30, "/healthz")
    assert ask(daemon, "/api/v1/status", "ops.example.org").status_code == 200
    assert ask(daemon, "/api/v1/status", "evil.example").status_code == 421
    assert daemon.stop() == 0
    warnings = [line for line in daemon.log().splitlines() if "is not loopback" in line]
    assert len(warnings) == 1, daemon.log()
    assert f"HTTP on 0.0.0.0:{port} is not loopback" in warnings[0]
    assert "localhost, ops.example.org, status.example.com, any IP address" in warnings[0]


# --- a busy port ------------------------------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_a_busy_port_is_one_line_and_exit_1_before_anything_starts(
    busy_port: int, config: Path, sqlite_url: str
) -> None:
    args = ("--database-url", sqlite_url, "--config", config, "run", "--migrate")
    result = run_reconciler(*args, "--http", f"127.0.0.1:{busy_port}", timeout=30)
    assert result.code == 1
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].endswith(
        f"ERROR reconciler.daemon.app: cannot serve HTTP on 127.0.0.1:{busy_port}: address already "
        "in use; choose a free port with --http 127.0.0.1:PORT (or --http off)"
    )
    # Nothing ran before the port was refused, not even the migration asked for.
    database = Path(make_url(sqlite_url).database or "")
    if database.exists():
        with sqlite3.connect(database) as conn:
            assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


# --- nothing from another host ----------------------------------------------------------------


def test_no_page_loads_anything_from_another_host(
    start_daemon: Callable[..., Daemon], config: Path, sqlite_url: str
) -> None:
    daemon = start_daemon(sqlite_url, config, "--probe-interval", "1")
    daemon.wait_generation(1)
    daemon.wait_for(lambda: daemon.get("/readyz/tasks").status_code == 200, what="tasks ready")
    for path in PAGES:
        page = daemon.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert LOADS_FROM_ELSEWHERE.search(page.text) is None, (path, page.text)
        assert "default-src 'none'" in page.headers["content-security-policy"]
    docs = daemon.get("/docs").text
    for endpoint in ["/healthz", "/readyz", "/metrics", "/api/v1/status", "/api/v1/jobs"]:
        assert f"<a href='{endpoint}'>" in docs
    openapi = daemon.get("/openapi.json")
    assert openapi.status_code == 200 and "/api/v1/status" in openapi.json()["paths"]
    assert re.search(r"https?://", openapi.text) is None
    for gone in ["/redoc", "/docs/oauth2-redirect"]:
        assert daemon.get(gone).status_code == 404, gone
    assert daemon.stop() == 0


# --- the database password --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            f"postgresql://postgres@127.0.0.1:5432/test?password={PASSWORD}",
            "postgresql://postgres@127.0.0.1:5432/test?password=***",
        ),
        (
            f"postgresql://bob:{USER_PASSWORD}@db:5432/x?sslmode=require&sslpassword={PASSWORD}",
            "postgresql://bob:***@db:5432/x?sslmode=require&sslpassword=***",
        ),
        (
            f"postgresql://bob@db/x?PassWord={PASSWORD}&passfile=/etc/pgpass&password=two2secret",
            "postgresql://bob@db/x?PassWord=***&passfile=%2Fetc%2Fpgpass&password=***",
        ),
        (f"sqlite:////tmp/r.db?password={PASSWORD}", "sqlite:////tmp/r.db?password=***"),
        ("sqlite:///reconciler.db", "sqlite:///reconciler.db"),
    ],
)
def test_a_database_url_is_shown_with_every_credential_masked(url: str, shown: str) -> None:
    assert safe_url(url) == shown


def test_the_password_values_of_a_url_are_found_in_every_spelling() -> None:
    url = f"postgresql://bob:p%40ss{PASSWORD}@db/x?password=a%26b{PASSWORD}&sslmode=require"
    found = url_secrets(url)
    assert {f"p@ss{PASSWORD}", f"p%40ss{PASSWORD}", f"a&b{PASSWORD}", f"a%26b{PASSWORD}"} <= found
    assert "require" not in found


def test_opening_the_database_remembers_its_passwords_and_scrubs_its_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"postgresql://postgres:{USER_PASSWORD}@127.0.0.1:1/test?password={PASSWORD}"
    quoted = Exception(f'connect failed: password "{PASSWORD}" / "{USER_PASSWORD}" refused')
    with pytest.raises(ReconcilerError) as raised, open_database(url):
        raise DBAPIError("SELECT 1", None, quoted)
    assert {PASSWORD, USER_PASSWORD} <= secrets.known()
    message = str(raised.value)
    assert PASSWORD not in message and USER_PASSWORD not in message
    assert "password=***" in message and "[redacted]" in message
    for log_format in LogFormat:
        logs.configure(log_format, 1)
        logging.getLogger("reconciler.test").warning("driver said: %s", quoted)
        logged = capsys.readouterr().err
        assert "driver said" in logged and PASSWORD not in logged, logged


def test_a_command_that_cannot_reach_the_database_does_not_show_its_password(
    cli: Callable[..., Result],
) -> None:
    url = f"postgresql://postgres:{USER_PASSWORD}@127.0.0.1:1/test?password={PASSWORD}"
    result = cli("--database-url", url, "--log-format", "json", "status")
    assert result.code == 1
    assert "cannot reach the database postgresql://postgres:***@127.0.0.1:1/test" in result.stderr
    assert PASSWORD not in result.output and USER_PASSWORD not in result.output


@pytest.mark.parametrize(("database", "log_format"), [("sqlite", "text"), ("postgres", "json")])
def test_the_database_password_never_shows_in_pages_api_or_logs(
    start_daemon: Callable[..., Daemon],
    write_config: Callable[..., Path],
    fake: FakeServer,
    request: pytest.FixtureRequest,
    database: str,
    log_format: str,
) -> None:
    base = make_url(request.getfixturevalue(f"{database}_url"))
    if database == "postgres":  # trust auth: any password is accepted
        base = base.set(password=USER_PASSWORD)
    url = base.render_as_string(hide_password=False) + f"?password={PASSWORD}"
    fake_url = fake.add("local", models=[FakeModel("llama3.1:8b")])
    # A route naming the password as its provider: an error that quotes the value.
    routes = routes_file(extra=f"  quoting:\n    provider: {PASSWORD}\n    model: m\n")
    config = write_config({"providers.yaml": provider_file(fake_url), "routes.yaml": routes})
    env = {"RECONCILER_LOG_FORMAT": log_format}
    daemon = start_daemon(url, config, "--probe-interval", "1", env=env)
    daemon.wait_for(lambda: daemon.status()["error"] is not None, what="the config error")
    status = daemon.status()
    assert status["database"].endswith("?password=***")
    assert "[redacted]" in json.dumps(status["error"])
    for path in EVERY_PATH:
        answer = daemon.get(path)
        assert answer.status_code in (200, 503), path
        assert PASSWORD not in answer.text and USER_PASSWORD not in answer.text, path
    assert daemon.stop() == 0
    log = daemon.log()
    assert "?password=***" in log and "[redacted]" in log
    assert PASSWORD not in log and USER_PASSWORD not in log
