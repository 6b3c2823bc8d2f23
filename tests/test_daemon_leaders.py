"""Leader election between `reconciler run` processes on one database: one leader, a follower
that serves status only and names the leader, and a take-over when the leader goes.
"""

from __future__ import annotations

import signal
import socket
import time

from tests.builders import numbered_route_rows, numbered_routes
from tests.daemon_harness import Daemons
from tests.db_inspect import managed_state
from tests.fakeprovider import FakeModel


def test_two_daemons_on_postgresql_elect_one_leader_and_the_follower_takes_over_on_sigkill(
    start_daemon: Daemons,
    postgres_url: str,
) -> None:
    models = [FakeModel("llama3.1:8b"), FakeModel("qwen2.5:7b")]
    scene = start_daemon.on_fake(
        postgres_url, "--probe-interval", "1", provider={"models": models}, routes=numbered_routes()
    )
    first, directory = scene.daemon, scene.directory
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
    (directory / "routes.yaml").write_text(numbered_routes("qwen2.5:7b"), "utf-8")
    applied = second.wait_generation(2)
    changes = applied["last_apply"]["changes"]
    assert [c.split(" (", 1)[0] for c in changes] == ["~ route scoring", "~ route task-00001"]
    assert managed_state(postgres_url)["routes"] == numbered_route_rows("qwen2.5:7b", 2)
    assert second.stop() == 0


def test_a_second_daemon_on_the_same_sqlite_file_waits_and_names_the_first(
    start_daemon: Daemons,
    sqlite_url: str,
) -> None:
    models = [FakeModel("llama3.1:8b"), FakeModel("qwen2.5:7b")]
    scene = start_daemon.on_fake(sqlite_url, provider={"models": models}, routes=numbered_routes())
    first, directory = scene.daemon, scene.directory
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
    (directory / "routes.yaml").write_text(numbered_routes("qwen2.5:7b"), "utf-8")
    second.wait_generation(2)
    assert managed_state(sqlite_url)["routes"] == numbered_route_rows("qwen2.5:7b", 2)
    assert second.stop() == 0
