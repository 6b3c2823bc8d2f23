"""The log of `reconciler run --log-format json`: one JSON object per line, the HTTP server's own
errors included, and never a secret.
"""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from tests.builders import numbered_routes, provider_file
from tests.conftest import run_reconciler
from tests.daemon_harness import ROOT, Daemons
from tests.fakeprovider import FakeModel

SECRET = "sk-planted-0123456789abcdef"  # never to be seen in any body or log line
SECRET_ENV = "RECONCILER_TEST_PLANTED_KEY"


def test_json_logs_are_one_object_per_line_and_never_hold_a_secret(
    start_daemon: Daemons, sqlite_url: str
) -> None:
    scene = start_daemon.on_fake(
        sqlite_url,
        "--probe-interval",
        "1",
        provider={"models": [FakeModel("llama3.1:8b")], "api_key": "another-key"},
        providers=lambda url: provider_file(url, key_env=SECRET_ENV),
        routes=numbered_routes(),
        options=("--log-format", "json"),
        env={SECRET_ENV: SECRET},
    )
    daemon, directory = scene.daemon, scene.directory
    daemon.wait_for(lambda: "auth_failed" in daemon.log() or "401" in daemon.log())
    # A literal key where a reference belongs: an error that must not echo the literal.
    literal = provider_file(scene.provider_url).replace(
        "probe_timeout_s: 1", f'api_key: "{SECRET}"'
    )
    (directory / "providers.yaml").write_text(literal, "utf-8")
    daemon.wait_for(lambda: daemon.status()["error"] is not None, what="the error")
    (directory / "routes.yaml").write_text("version: 1\nroutes: [\n", "utf-8")
    daemon.wait_for(lambda: daemon.log().count('"level": "error"') >= 3, what="errors")
    assert daemon.stop(signal.SIGTERM) == 0
    output = daemon.log()
    lines = output.splitlines()
    assert len(lines) >= 8
    for line in lines:
        document = json.loads(line)
        assert isinstance(document, dict), line
        assert {"time", "level", "logger", "message"} <= document.keys(), line
    assert SECRET not in output
    assert json.loads(lines[-1])["message"] == "stopped"


def test_json_logs_hold_the_http_servers_own_errors_too(
    write_config: Callable[..., Path], sqlite_url: str
) -> None:
    directory = write_config({"routes.yaml": "version: 1\nroutes: {}\n"})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_reconciler(
            "--log-format", "json", "--database-url", sqlite_url, "--config", directory,
            "run", "--migrate", "--http", f"127.0.0.1:{port}",
            cwd=ROOT, timeout=30,
        )  # fmt: skip
    assert proc.code == 1
    documents = [json.loads(line) for line in (proc.stdout + proc.stderr).splitlines()]
    assert all(isinstance(d, dict) for d in documents)
    assert any("address already in use" in d["message"] for d in documents), documents
