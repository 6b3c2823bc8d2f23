"""`reconciler run` as a real process: files in, database and HTTP out."""

from __future__ import annotations

import signal

from sqlalchemy import create_engine, text

from tests.builders import routes_file
from tests.daemon_harness import Daemons
from tests.fakeprovider import FakeModel


def test_an_edit_is_applied_and_shown_then_sigterm_exits_0(
    start_daemon: Daemons,
    db_url: str,
) -> None:
    models = [FakeModel("llama3.1:8b"), FakeModel("qwen2.5:7b")]
    scene = start_daemon.on_fake(db_url, "--probe-interval", "1", provider={"models": models})
    daemon, directory, first = scene.daemon, scene.directory, scene.first
    assert first["leader"] is True
    assert first["error"] is None
    (directory / "routes.yaml").write_text(routes_file("qwen2.5:7b"), encoding="utf-8")
    second = daemon.wait_generation(2)
    changes = second["last_apply"]["changes"]
    assert [c.split(" (", 1)[0] for c in changes] == ["~ route extraction", "~ route scoring"]
    assert changes[1].startswith("~ route scoring (routes.yaml:"), changes
    assert changes[1].endswith('): model "llama3.1:8b" -> "qwen2.5:7b"'), changes
    daemon.wait_for(lambda: daemon.get("/readyz/tasks").status_code == 200, what="tasks ready")
    page = daemon.get("/").text
    assert "scoring" in page and "qwen2.5:7b" in page
    metrics = daemon.get("/metrics").text
    assert 'reconciler_reconcile_runs_total{result="applied"} 2.0' in metrics
    assert 'reconciler_task_servable{required="true",task="scoring"} 1.0' in metrics
    assert daemon.stop(signal.SIGTERM) == 0
    log = daemon.log()
    assert "Traceback" not in log
    assert "applied generation 2: Plan: 0 to create, 2 to update, 0 to delete" in log
    for line in changes:  # the log names each row and field the apply changed
        assert f"  {line}\n" in log, line


def test_an_invalid_edit_keeps_the_last_good_config_and_is_logged_once(
    start_daemon: Daemons,
    db_url: str,
) -> None:
    scene = start_daemon.on_fake(db_url, "--resync", "1")
    daemon, directory = scene.daemon, scene.directory
    (directory / "routes.yaml").write_text(routes_file(extra="  bad:\n    modle: x\n"), "utf-8")
    daemon.wait_for(lambda: daemon.status()["error"] is not None, what="the error to show")
    error = daemon.status()["error"]
    assert error["kind"] == "invalid"
    assert {p["path"] for p in error["problems"]} >= {"routes.bad.modle"}
    assert daemon.get("/readyz").status_code == 200  # the problem is reported: that is ready
    daemon.wait_for(
        lambda: daemon.log().count("problem(s) in the config files") >= 1, what="the log line"
    )
    invalid_runs = 'reconciler_reconcile_runs_total{result="invalid"}'
    runs_before = daemon.metric(invalid_runs)
    daemon.wait_for(
        lambda: daemon.metric(invalid_runs) >= runs_before + 3, what="several resync cycles"
    )
    assert runs_before >= 1
    assert daemon.log().count("problem(s) in the config files") == 1
    assert daemon.status()["generation"] == 1
    (directory / "routes.yaml").write_text(routes_file("llama3.1:8b"), "utf-8")
    daemon.wait_for(lambda: daemon.status()["error"] is None, what="the error to clear")
    assert daemon.stop() == 0


def test_a_dangling_symlink_is_reported_and_the_daemon_keeps_running(
    start_daemon: Daemons,
    sqlite_url: str,
) -> None:
    scene = start_daemon.on_fake(sqlite_url)
    daemon, directory = scene.daemon, scene.directory
    (directory / "zz.yaml").symlink_to(directory / "nowhere.yaml")
    daemon.wait_for(lambda: daemon.status()["error"] is not None, what="the error to show")
    error = daemon.status()["error"]
    assert error["kind"] == "invalid"
    assert any(p["file"].endswith("zz.yaml") for p in error["problems"])
    assert daemon.get("/healthz").status_code == 200
    (directory / "zz.yaml").unlink()
    daemon.wait_for(lambda: daemon.status()["error"] is None, what="the error to clear")
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


def test_with_drift_report_an_edit_elsewhere_does_not_undo_a_change_made_by_hand(
    start_daemon: Daemons,
    sqlite_url: str,
) -> None:
    scene = start_daemon.on_fake(sqlite_url, "--drift=report")
    daemon, directory = scene.daemon, scene.directory
    engine = create_engine(sqlite_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE llm_task_routes SET model = 'hand:1b' WHERE task = 'scoring'")
            )
        extra = "  summarization:\n    provider: local\n    model: llama3.1:8b\n"
        (directory / "routes.yaml").write_text(routes_file(extra=extra), encoding="utf-8")
        applied = daemon.wait_generation(2)
        (change,) = applied["last_apply"]["changes"]
        assert change.startswith("+ route summarization (routes.yaml:"), change
        with engine.connect() as conn:
            query = "SELECT model FROM llm_task_routes WHERE task = 'scoring'"
            assert conn.execute(text(query)).scalar_one() == "hand:1b"
    finally:
        engine.dispose()
    assert daemon.stop() == 0


def test_a_mass_delete_is_refused_naming_the_command_that_allows_it(
    start_daemon: Daemons,
    sqlite_url: str,
) -> None:
    scene = start_daemon.on_fake(sqlite_url)
    daemon, directory = scene.daemon, scene.directory
    (directory / "routes.yaml").unlink()  # 2 of the 3 managed rows would go
    daemon.wait_for(
        lambda: (daemon.status()["error"] or {}).get("kind") == "refused", 30, "the refusal"
    )
    message = daemon.status()["error"]["message"]
    assert message.startswith("nothing was applied: the plan deletes 2 of 3 managed rows"), message
    assert message.endswith("run `reconciler apply --allow-mass-delete`"), message
    page = daemon.get("/").text
    assert "<b>refused:</b> nothing was applied: the plan deletes 2 of 3 managed rows" in page
    assert daemon.status()["generation"] == 1
    assert daemon.stop() == 0
    assert daemon.log().count("nothing was applied: the plan deletes 2 of 3") == 1
