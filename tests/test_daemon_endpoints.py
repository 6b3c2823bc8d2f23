"""What a running `reconciler run` answers over HTTP, as an operator and a load balancer see it:
/healthz, /readyz, /readyz/tasks, /metrics, the API (never showing a secret), and drift.
"""

from __future__ import annotations

import signal
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, text

from reconciler.adapters.db.engine import make_engine
from reconciler.daemon.metrics import Metrics
from tests.builders import numbered_route_rows, numbered_routes, provider_file
from tests.daemon_harness import Daemons
from tests.fakeprovider import FakeModel, FakeServer

SECRET = "sk-planted-0123456789abcdef"  # never to be seen in any body or log line
SECRET_ENV = "RECONCILER_TEST_PLANTED_KEY"


def test_healthz_stays_fast_while_a_provider_never_answers(
    start_daemon: Daemons, fake: FakeServer, sqlite_url: str
) -> None:
    daemon = start_daemon.on_fake(
        sqlite_url,
        "--probe-interval",
        "1",
        provider={"models": [FakeModel("llama3.1:8b")], "hang": True},
        providers=lambda url: provider_file(url, probe_timeout_s=30),
        routes=numbered_routes(),
    ).daemon
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
    code, took = daemon.stop_timed(signal.SIGTERM)  # a probe in flight does not hold it up
    assert code == 0
    assert took < 3, f"SIGTERM took {took:.1f}s while a probe hung"


def test_readyz_turns_503_with_a_database_reason_when_the_database_is_dropped(
    start_daemon: Daemons, postgres_url: str, postgres_admin: Engine
) -> None:
    args = ("--resync", "1", "--probe-interval", "1")
    daemon = start_daemon.on_fake(postgres_url, *args, routes=numbered_routes()).daemon
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
    start_daemon: Daemons, fake: FakeServer, sqlite_url: str
) -> None:
    scene = start_daemon.on_fake(
        sqlite_url, "--probe-interval", "1", routes=numbered_routes(), wait=False
    )
    daemon = scene.daemon
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
    start_daemon: Daemons, db_url: str
) -> None:
    daemon = start_daemon.on_fake(
        db_url,
        "--probe-interval",
        "1",
        provider={"models": [FakeModel("llama3.1:8b")], "api_key": SECRET},
        providers=lambda url: provider_file(url, key_env=SECRET_ENV),
        routes=numbered_routes(),
        env={SECRET_ENV: SECRET},
    ).daemon
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
    assert [(r["task"], r["provider"], r["model"]) for r in routes] == numbered_route_rows(
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
    start_daemon: Daemons, request: pytest.FixtureRequest, drift: str, database: str
) -> None:
    db_url: str = request.getfixturevalue(database)
    args = ("--resync", "1", f"--drift={drift}")
    daemon = start_daemon.on_fake(db_url, *args, routes=numbered_routes()).daemon
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
