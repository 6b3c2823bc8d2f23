"""`reconciler run` as a process among others: signals, leader election, endpoints, logs.

Each test starts real daemons (`python -m reconciler ... run`) on a free port and talks to them
over HTTP, as an operator and a load balancer would.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Connection, Engine, text

from reconciler.adapters.db.engine import make_engine
from reconciler.adapters.db.store import APPLY_LOCK_KEY
from reconciler.daemon.metrics import Metrics
from tests.builders import provider_file
from tests.conftest import run_reconciler
from tests.daemon_harness import ROOT, Daemon, free_port
from tests.fakeprovider import FakeModel, FakeServer

SECRET = "sk-planted-0123456789abcdef"  # never to be seen in any body or log line
SECRET_ENV = "RECONCILER_TEST_PLANTED_KEY"


def provider_yaml(url: str, *, probe_timeout_s: float = 1, secret: bool = False) -> str:
    return provider_file(
        url, probe_timeout_s=probe_timeout_s, key_env=SECRET_ENV if secret else None
    )


def routes_yaml(model: str = "llama3.1:8b", count: int = 2) -> str:
    """`scoring` (required) and `count - 1` more routes, all on provider `local`."""
    lines = ["version: 1", "routes:", "  scoring:", "    provider: local", f"    model: {model}"]
    lines.append("    required: true")
    lines += [f"  task-{i:05d}: {{provider: local, model: {model}}}" for i in range(1, count)]
    return "\n".join(lines) + "\n"


def snapshot(db_url: str) -> dict[str, Any]:
    """The managed content of the database: generation, providers and routes."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            generation = conn.execute(text("SELECT generation FROM reconcile_state")).scalar()
            providers = conn.execute(text("SELECT name, type FROM llm_provider_configs")).all()
            routes = conn.execute(text("SELECT task, provider, model FROM llm_task_routes")).all()
    finally:
        engine.dispose()
    return {
        "generation": generation,
        "providers": sorted(tuple(r) for r in providers),
        "routes": sorted(tuple(r) for r in routes),
    }


def expected_routes(model: str, count: int) -> list[tuple[str, str, str]]:
    tasks = ["scoring", *(f"task-{i:05d}" for i in range(1, count))]
    return sorted((task, "local", model) for task in tasks)


@contextmanager
def postgres_apply_lock(db_url: str) -> Iterator[Connection]:
    """Hold the apply lock (as a long CLI apply would) until the block ends."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn, conn.begin():
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": APPLY_LOCK_KEY})
            yield conn
    finally:
        engine.dispose()


def waiting_for_apply_lock(engine: Engine, pid: int) -> bool:
    """The daemon `pid` is inside an apply, polling for the lock."""
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE :name "
                "AND query LIKE '%pg_try_advisory_xact_lock%' AND state LIKE 'idle in trans%'"
            ),
            {"name": f"% pid {pid}"},
        ).scalar_one()
    return bool(found)


def stop_timed(daemon: Daemon, signum: int) -> tuple[int, float]:
    started = time.monotonic()
    code = daemon.stop(signum, timeout=15)
    return code, time.monotonic() - started


def flock_is_free(path: Path) -> bool:
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return True


# --- 1. a signal during an apply ---------------------------------------------------------------


def test_sigterm_while_an_apply_waits_for_the_lock_exits_0_and_writes_nothing(
    start_daemon: Callable[..., Daemon],
    write_config: Callable[..., Path],
    fake: FakeServer,
    postgres_url: str,
) -> None:
    url = fake.add("local", models=[FakeModel("llama3.1:8b")])
    directory = write_config({"providers.yaml": provider_yaml(url), "routes.yaml": routes_yaml()})
    daemon = start_daemon(postgres_url, directory)
    daemon.wait_generation(1)
    before = snapshot(postgres_url)
    watcher = make_engine(postgres_url)
    try:
        with postgres_apply_lock(postgres_url):
            (directory / "routes.yaml").write_text(routes_yaml("qwen2.5:7b", 3), "utf-8")
            daemon.wait_for(
                lambda: waiting_for_apply_lock(watcher, daemon.proc.pid),
                what="the daemon's apply to wait for the lock",
            )
            code, took = stop_timed(daemon, signal.SIGTERM)
            assert snapshot(postgres_url) == before
    finally:
        watcher.dispose()
    print(f"exit {code} {took:.2f}s after SIGTERM mid-apply")
    assert code == 0, daemon.log()
    assert took < 10
    assert "Traceback" not in daemon.log()
    # With --lock-timeout 0, an apply lock the signalled daemon left behind fails this at once.
    result = run_reconciler(
        "--database-url", postgres_url, "--config", directory, "apply", "--lock-timeout", "0"
    )
    assert result.code == 0, result.output
    after = snapshot(postgres_url)
    assert after["generation"] == 2
    assert after["routes"] == expected_routes("qwen2.5:7b", 3)


def test_sigterm_during_a_5000_route_apply_leaves_the_before_or_the_after_state(
    start_daemon: Callable[..., Daemon],
    write_config: Callable[..., Path],
    fake: FakeServer,
    postgres_url: str,
) -> None:
    url = fake.add("local", models=[FakeModel("llama3.1:8b")])
    directory = write_config({"providers.yaml": provider_yaml(url), "routes.yaml": routes_yaml()})
    daemon = start_daemon(postgres_url, directory)
    daemon.wait_generation(1)
    before = snapshot(postgres_url)
    watcher = make_engine(postgres_url)
    try:
        (directory / "routes.yaml").write_text(routes_yaml("qwen2.5:7b", 5000), "utf-8")
        daemon.wait_for(
            lambda: applying(watcher, daemon.proc.pid), what="the daemon to start writing"
        )
        code, took = stop_timed(daemon, signal.SIGTERM)
    finally:
        watcher.dispose()
    state = snapshot(postgres_url)
    print(f"exit {code} {took:.2f}s; generation after the signal: {state['generation']}")
    assert code == 0, daemon.log()
    assert took < 10
    assert "Traceback" not in daemon.log()
    if state["generation"] == before["generation"]:
        assert state == before
    else:
        assert state["generation"] == 2
        assert state["routes"] == expected_routes("qwen2.5:7b", 5000)
    # With --lock-timeout 0, an apply lock the signalled daemon left behind fails this at once.
    result = run_reconciler(
        "--database-url", postgres_url, "--config", directory, "apply", "--lock-timeout", "0"
    )
    assert result.code == 0, result.output
    assert snapshot(postgres_url)["routes"] == expected_routes("qwen2.5:7b", 5000)


def applying(engine: Engine, pid: int) -> bool:
    """The daemon `pid` holds the apply lock and has begun to write."""
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :hi "
                "AND l.objid = :lo AND a.application_name LIKE :name "
                "AND a.backend_xid IS NOT NULL"
            ),
            {
                "hi": APPLY_LOCK_KEY >> 32,
                "lo": APPLY_LOCK_KEY & 0xFFFFFFFF,
                "name": f"% pid {pid}",
            },
        ).scalar_one()
    return bool(found)


def test_sigint_while_a_sqlite_apply_waits_exits_0_and_releases_the_daemon_lock(
    start_daemon: Callable[..., Daemon],
    write_config: Callable[..., Path],
    fake: FakeServer,
    sqlite_url: str,
    tmp_path: Path,
) -> None:
    url = fake.add("local", models=[FakeModel("llama3.1:8b")])
    directory = write_config({"providers.yaml": provider_yaml(url), "routes.yaml": routes_yaml()})
    daemon = start_daemon(sqlite_url, directory)
    daemon.wait_generation(1)
    database = tmp_path / "reconciler.db"
    daemon_lock = Path(f"{database}.daemon-lock")
    assert not flock_is_free(daemon_lock)
    before = snapshot(sqlite_url)
    writer = sqlite3.connect(database, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # a writer that holds the database
        (directory / "routes.yaml").write_text(routes_yaml("qwen2.5:7b", 3), "utf-8")
        time.sleep(1.0)  # the edit is seen, validated, and the apply waits for the writer
        code, took = stop_timed(daemon, signal.SIGINT)
        writer.execute("ROLLBACK")
    finally:
        writer.close()
    print(f"exit {code} {took:.2f}s after SIGINT mid-apply")
    assert code == 0, daemon.log()
    assert took < 10
    assert "Traceback" not in daemon.log()
    assert snapshot(sqlite_url) == before
    assert flock_is_free(daemon_lock)
    started = time.monotonic()
    result = run_reconciler(
        "--database-url", sqlite_url, "--config", directory, "apply", "--lock-timeout", "0"
    )
    assert result.code == 0, result.output
    assert time.monotonic() - started < 10
    assert snapshot(sqlite_url)["routes"] == expected_routes("qwen2.5:7b", 3)


# --- 2, 3. leader election -------------------------------------------------------------------


def test_two_daemons_on_postgresql_elect_one_leader_and_the_follower_takes_over_on_sigkill(
    start_daemon: Callable[..., Daemon],
    write_config: Callable[..., Path],
    fake: FakeServer,
    postgres_url: str,
) -> None:
    url = fake.add("local", models=[FakeModel("llama3.1:8b"), FakeModel("qwen2.5:7b")])
    directory = write_config({"providers.yaml": provider_yaml(url), "routes.yaml": routes_yaml()})
    first = start_daemon(postgres_url, directory, "--probe-interval", "1")
    first.wait_generation(1)
    second = start_daemon(postgres_url, directory, "--probe-interval", "1")
    second.wait_for(lambda: second.status()["leader_note"] != "electing", what="an election")
    leaders = [d.status()["leader"] for d in (first, second)]
    assert leaders == [True, False]
    note = second.status()["leader_note"]
    assert f"pid {first.proc.pid}" in note, note
    second.wait_for(
        lambda: (
            [t["status"] for t in second.get("/api/v1/readiness").json()["tasks"]]
            == ["ready", "ready"]
        ),
        what="the follower to show the leader's verdicts",
    )
    page = second.get("/")
    assert page.status_code == 200
    assert "follower" in page.text and f"pid {first.proc.pid}" in page.text
    assert second.get("/readyz").status_code == 200, second.get("/readyz").json()
    assert "reconciler_leader 0.0" in second.get("/metrics").text
    assert "reconciler_leader 1.0" in first.get("/metrics").text

    first.send(signal.SIGKILL)
    killed = time.monotonic()
    first.proc.wait(5)
    second.wait_for(lambda: second.status()["leader"], timeout=10, what="the hand-over")
    handover = time.monotonic() - killed
    print(f"leader hand-over after SIGKILL: {handover:.2f}s")
    assert handover < 5
    assert "this process reconciles" in second.log()
    (directory / "routes.yaml").write_text(routes_yaml("qwen2.5:7b"), "utf-8")
    applied = second.wait_generation(2)
    changes = applied["last_apply"]["changes"]
    assert [c.split(" (", 1)[0] for c in changes] == ["~ route scoring", "~ route task-00001"]
    assert snapshot(postgres_url)["routes"] == expected_routes("qwen2.5:7b", 2)
    assert second.stop() == 0


def test_a_second_daemon_on_the_same_sqlite_file_waits_and_names_the_first(
    start_daemon: Callable[..., Daemon],
    write_config: Callable[..., Path],
    fake: FakeServer,
    sqlite_url: str,
) -> None:
    url = fake.add("local", models=[FakeModel("llama3.1:8b"), FakeModel("qwen2.5:7b")])
    directory = write_config({"providers.yaml": provider_yaml(url), "routes.yaml": routes_yaml()})
    first = start_daemon(sqlite_url, directory)
    first.wait_generation(1)
    second = start_daemon(sqlite_url, directory)
    second.wait_for(lambda: second.status()["leader_note"] != "electing", what="an election")
    status = second.status()
    assert status["leader"] is False
    holder = f"reconciler on {socket.gethostname()} pid {first.proc.pid}"
    assert holder in status["leader_note"]
    second.wait_for(lambda: "serves status only" in second.log(), what="the follower's log line")
    assert holder in second.log()
    assert "applied generation" not in second.log()
    assert first.stop() == 0
    second.wait_for(lambda: second.status()["leader"], timeout=5, what="the take-over")
    (directory / "routes.yaml").write_text(routes_yaml("qwen2.5:7b"), "utf-8")
    second.wait_generation(2)
    assert snapshot(sqlite_url)["routes"] == expected_routes("qwen2.5:7b", 2)
    assert second.stop() == 0


# --- 4. endpoints ----------------------------------------------------------------------------


def test_healthz_stays_fast_while_a_provider_never_answers(
    start_daemon: Callable[..., Daemon],
    write_config: Callable[..., Path],
    fake: FakeServer,
    sqlite_url: str,
) -> None:
    url = fake.add("local", models=[FakeModel("llama3.1:8b")], hang=True)
    config = {
        "providers.yaml": provider_yaml(url, probe_timeout_s=30),
        "routes.yaml": routes_yaml(),
    }
    daemon = start_daemon(sqlite_url, write_config(config), "--probe-interval", "1")
    daemon.wait_generation(1)
    daemon.wait_for(lambda: bool(fake.paths("local")), what="a probe to reach the black hole")
    slowest = 0.0
    for _ in range(20):
        started = time.monotonic()
        response = daemon.get("/healthz")
        slowest = max(slowest, time.monotonic() - started)
        assert response.status_code == 200
        assert response.json()["status"] == "ok"
        time.sleep(0.05)
    assert slowest < 0.5, f"/healthz took {slowest:.3f}s while a probe hung"
    assert daemon.get("/readyz").status_code == 200  # the database answers; files applied
    assert daemon.get("/api/v1/status").status_code == 200
    code, took = stop_timed(daemon, signal.SIGTERM)  # a probe in flight does not hold it up
    assert code == 0
    assert took < 3, f"SIGTERM took {took:.1f}s while a probe hung"


def test_readyz_turns_503_with_a_database_reason_when_the_database_is_dropped(
    start_daemon: Callable[..., Daemon],
    write_config: Callable[..., Path],
    fake: FakeServer,
    postgres_url: str,
    postgres_admin: Engine,
) -> None:
    url = fake.add("local", models=[FakeModel("llama3.1:8b")])
    directory = write_config({"providers.yaml": provider_yaml(url), "routes.yaml": routes_yaml()})
    daemon = start_daemon(postgres_url, directory, "--resync", "1", "--probe-interval", "1")
    daemon.wait_generation(1)
    ready = daemon.get("/readyz")
    assert ready.status_code == 200, ready.json()
    assert ready.json()["generation"] == 1
    name = postgres_url.rsplit("/", 1)[1]
    with postgres_admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    daemon.wait_for(lambda: daemon.get("/readyz").status_code == 503, what="/readyz to fail")
    reasons = daemon.get("/readyz").json()["reasons"]
    assert any(r.startswith("database: ") for r in reasons), reasons
    time.sleep(2.5)  # a few leader checks, resyncs and readiness rounds against no database
    assert daemon.proc.poll() is None, daemon.log()
    assert daemon.get("/healthz").status_code == 200
    assert daemon.get("/readyz").status_code == 503
    assert daemon.get("/").status_code == 200
    assert daemon.status()["leader"] is False
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


def test_readyz_tasks_follows_the_required_tasks(
    start_daemon: Callable[..., Daemon],
    write_config: Callable[..., Path],
    fake: FakeServer,
    sqlite_url: str,
) -> None:
    url = fake.add("local", models=[FakeModel("llama3.1:8b")])
    config = {"providers.yaml": provider_yaml(url), "routes.yaml": routes_yaml()}
    daemon = start_daemon(sqlite_url, write_config(config), "--probe-interval", "1")
    daemon.wait_for(lambda: daemon.get("/readyz/tasks").status_code == 200, what="tasks ready")
    assert daemon.get("/readyz").status_code == 200
    fake.behaviours["local"].status = 500
    daemon.wait_for(lambda: daemon.get("/readyz/tasks").status_code == 503, what="not ready")
    tasks = {t["task"]: t for t in daemon.get("/readyz/tasks").json()["tasks"]}
    assert tasks["scoring"]["status"] == "not_ready"
    assert tasks["scoring"]["reason"] == "server_error"
    assert tasks["scoring"]["remedy"]
    assert daemon.get("/readyz").status_code == 200  # the files are applied: still ready
    assert daemon.get("/healthz").status_code == 200
    fake.behaviours["local"].status = None
    daemon.wait_for(lambda: daemon.get("/readyz/tasks").status_code == 200, what="ready again")
    assert daemon.stop() == 0


def test_metrics_and_the_api_answer_and_never_show_a_secret(
    start_daemon: Callable[..., Daemon],
    write_config: Callable[..., Path],
    fake: FakeServer,
    db_url: str,
) -> None:
    url = fake.add("local", models=[FakeModel("llama3.1:8b")], api_key=SECRET)
    config = {"providers.yaml": provider_yaml(url, secret=True), "routes.yaml": routes_yaml()}
    daemon = start_daemon(
        db_url, write_config(config), "--probe-interval", "1", env={SECRET_ENV: SECRET}
    )
    daemon.wait_generation(1)
    # Ready proves that the probe sent the key: the fake answers 401 without it.
    daemon.wait_for(lambda: daemon.get("/readyz/tasks").status_code == 200, what="tasks ready")

    metrics = daemon.get("/metrics")
    assert metrics.status_code == 200
    exposed = {f.name: f for f in text_string_to_metric_families(metrics.text)}
    documented = {m.name: m.documentation for m in Metrics().registry.collect()}
    assert len(documented) >= 11
    for name, documentation in documented.items():
        assert name in exposed, f"{name} is missing from /metrics"
        assert exposed[name].documentation == documentation

    status = daemon.status()
    assert status["leader"] is True and status["generation"] == 1 and status["error"] is None
    assert status["last_apply"]["summary"].startswith("Plan: 3 to create")
    readiness = daemon.get("/api/v1/readiness").json()
    assert readiness["ready"] is True
    assert {t["task"] for t in readiness["tasks"]} == {"scoring", "task-00001"}
    providers = daemon.get("/api/v1/providers").json()
    assert [p["name"] for p in providers] == ["local"]
    assert providers[0]["config"]["endpoint"]["api_key"] == {"env": SECRET_ENV}
    routes = daemon.get("/api/v1/routes").json()
    assert [(r["task"], r["provider"], r["model"]) for r in routes] == expected_routes(
        "llama3.1:8b", 2
    )
    revisions = daemon.get("/api/v1/revisions").json()
    assert [(r["generation"], r["pid"]) for r in revisions] == [(1, daemon.proc.pid)]
    assert daemon.get("/api/v1/revisions?limit=0").status_code == 422
    paths = set(daemon.get("/openapi.json").json()["paths"])
    api = {"/api/v1/status", "/api/v1/readiness", "/api/v1/providers", "/api/v1/routes"}
    api |= {"/api/v1/revisions", "/api/v1/jobs"}
    assert paths >= api | {"/healthz", "/readyz", "/readyz/tasks", "/metrics"}
    assert daemon.get("/api/v1/jobs").json() == {"tasks": {}, "dead": []}

    everything = [
        "/",
        "/healthz",
        "/readyz",
        "/readyz/tasks",
        "/metrics",
        "/api/v1/status",
        "/api/v1/readiness",
        "/api/v1/providers",
        "/api/v1/routes",
        "/api/v1/revisions",
        "/api/v1/jobs",
        "/openapi.json",
        "/docs",
    ]
    for path in everything:
        response = daemon.get(path)
        assert response.status_code == 200, path
        assert SECRET not in response.text, f"the secret value leaked through {path}"
    assert daemon.stop() == 0
    assert SECRET not in daemon.log()


@pytest.mark.parametrize(
    ("drift", "database"), [("report", "sqlite_url"), ("correct", "postgres_url")]
)
def test_drift_is_reported_or_corrected_at_the_next_resync(
    start_daemon: Callable[..., Daemon],
    write_config: Callable[..., Path],
    fake: FakeServer,
    request: pytest.FixtureRequest,
    drift: str,
    database: str,
) -> None:
    db_url: str = request.getfixturevalue(database)
    url = fake.add("local", models=[FakeModel("llama3.1:8b")])
    config = {"providers.yaml": provider_yaml(url), "routes.yaml": routes_yaml()}
    daemon = start_daemon(db_url, write_config(config), "--resync", "1", f"--drift={drift}")
    daemon.wait_generation(1)
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE llm_task_routes SET model = 'x:1b' WHERE task = 'scoring'"))

        def model() -> str:
            with engine.connect() as conn:
                query = "SELECT model FROM llm_task_routes WHERE task = 'scoring'"
                return str(conn.execute(text(query)).scalar_one())

        if drift == "report":
            daemon.wait_for(lambda: daemon.status()["drift"], what="the drift report")
            assert daemon.status()["drift"] == ["~ route scoring"]
            reported = 'reconciler_reconcile_runs_total{result="drift_reported"}'
            seen = daemon.metric(reported)
            daemon.wait_for(lambda: daemon.metric(reported) > seen, what="another resync")
            assert model() == "x:1b"
            assert daemon.status()["generation"] == 1
            assert daemon.metric("reconciler_drift_corrected_total") == 0
            assert "route scoring" in daemon.get("/").text.split("<h2>Drift</h2>", 1)[1]
            assert daemon.get("/readyz").status_code == 200
        else:
            daemon.wait_for(lambda: model() == "llama3.1:8b", what="the drift to be corrected")
            status = daemon.wait_generation(2)
            (change,) = status["last_apply"]["changes"]
            assert change.startswith("~ route scoring (routes.yaml:"), change
            assert change.endswith(' [drift corrected]: model "x:1b" -> "llama3.1:8b"'), change
            assert status["drift"] == []
            assert daemon.metric("reconciler_drift_corrected_total") == 1
            assert "corrected drift on 1 row(s) changed outside the files: route scoring" in (
                daemon.log()
            )
    finally:
        engine.dispose()
    assert daemon.stop() == 0


# --- 5. logs ---------------------------------------------------------------------------------


def test_json_logs_are_one_object_per_line_and_never_hold_a_secret(
    write_config: Callable[..., Path],
    fake: FakeServer,
    sqlite_url: str,
    tmp_path: Path,
) -> None:
    url = fake.add("local", models=[FakeModel("llama3.1:8b")], api_key="another-key")
    config = {"providers.yaml": provider_yaml(url, secret=True), "routes.yaml": routes_yaml()}
    directory = write_config(config)
    port = free_port()
    log_path = tmp_path / "daemon.log"
    args = [sys.executable, "-m", "reconciler", "--log-format", "json"]
    args += ["--database-url", sqlite_url, "--config", str(directory), "run", "--migrate"]
    args += ["--http", f"127.0.0.1:{port}", "--probe-interval", "1"]
    with log_path.open("wb") as out:
        env = {**os.environ, SECRET_ENV: SECRET}
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    daemon = Daemon(proc, port, log_path, args)
    try:
        daemon.wait_generation(1, timeout=30)
        daemon.wait_for(lambda: "auth_failed" in daemon.log() or "401" in daemon.log())
        # A literal key where a reference belongs: an error that must not echo the literal.
        literal = provider_yaml(url).replace("probe_timeout_s: 1", f'api_key: "{SECRET}"')
        (directory / "providers.yaml").write_text(literal, "utf-8")
        daemon.wait_for(lambda: daemon.status()["error"] is not None, what="the error")
        (directory / "routes.yaml").write_text("version: 1\nroutes: [\n", "utf-8")
        daemon.wait_for(lambda: daemon.log().count('"level": "error"') >= 3, what="errors")
        assert daemon.stop(signal.SIGTERM) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
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
        args = [sys.executable, "-m", "reconciler", "--log-format", "json"]
        args += ["--database-url", sqlite_url, "--config", str(directory), "run", "--migrate"]
        proc = subprocess.run(
            [*args, "--http", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=30,
            check=False,
        )
    assert proc.returncode == 1
    documents = [json.loads(line) for line in (proc.stdout + proc.stderr).splitlines()]
    assert all(isinstance(d, dict) for d in documents)
    assert any("address already in use" in d["message"] for d in documents), documents
