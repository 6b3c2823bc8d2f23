"""Hostile entries in the config directory, fed to the commands as a user runs them.

A FIFO, a socket or a device named like a config file, a name that is not UTF-8, a symlink loop
and a directory that cannot be listed are each an error at their path: never a hang, never a
traceback, never a reason to delete. Symlinked files and directories are followed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from reconciler.adapters.db import migrate
from reconciler.adapters.db.engine import make_engine
from reconciler.adapters.db.tables import providers, routes
from reconciler.adapters.files import read_files
from reconciler.errors import ConfigInvalid
from tests.builders import provider_file
from tests.conftest import ROOT, Result
from tests.daemon_harness import Daemon
from tests.fakeprovider import FakeModel, FakeServer

pytestmark = pytest.mark.timeout(60)

Run = Callable[..., Result]


def routes_yaml(model: str, *tasks: str) -> str:
    lines = ["version: 1", "routes:"]
    for task in tasks:
        lines += [f"  {task}:", "    provider: local", f"    model: {model}"]
    return "\n".join(lines) + "\n"


TOP_TASKS = ("scoring", "extraction", "summarization", "tagging")
TEAM_TASK = "team-digest"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A valid config directory: a provider and four routes on top, one route in `team/`."""
    directory = tmp_path / "config"
    (directory / "team").mkdir(parents=True)
    (directory / "providers.yaml").write_text(provider_file("http://127.0.0.1:9"))
    (directory / "routes.yaml").write_text(routes_yaml("llama3.1:8b", *TOP_TASKS))
    (directory / "team" / "digest.yaml").write_text(routes_yaml("llama3.1:8b", TEAM_TASK))
    return directory


@pytest.fixture
def database(tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    """A migrated SQLite database: its URL and an engine on it."""
    url = f"sqlite:///{tmp_path / 'reconciler.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    yield url, engine
    engine.dispose()


def dump(engine: Engine) -> str:
    """Every row of every table as SQL text: any write shows."""
    assert engine.url.database
    with sqlite3.connect(engine.url.database) as conn:
        return "\n".join(conn.iterdump())


def managed(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        names = {f"provider {n}" for n in conn.execute(select(providers.c.name)).scalars()}
        tasks = {f"route {t}" for t in conn.execute(select(routes.c.task)).scalars()}
    return names | tasks


ALL_ROWS = {"provider local", *(f"route {t}" for t in (*TOP_TASKS, TEAM_TASK))}


# --- the hostile entries: each makes one, and says where and what the error is -----------------

Hostile = tuple[str, str, str]  # (path relative to the config directory, code, message part)


def a_fifo(directory: Path) -> Hostile:
    os.mkfifo(directory / "pipe.yaml")
    return "pipe.yaml", "not_regular_file", "is a FIFO (named pipe), not a regular file"


def a_socket(directory: Path) -> Hostile:
    with socket.socket(socket.AF_UNIX) as sock:
        # A relative path: a socket path is limited to about 100 bytes.
        here = Path.cwd()
        os.chdir(directory)
        try:
            sock.bind("sock.yaml")
        finally:
            os.chdir(here)
    return "sock.yaml", "not_regular_file", "is a socket, not a regular file"


def a_symlink_to_a_fifo(directory: Path) -> Hostile:
    os.mkfifo(directory / "team" / "pipe")
    (directory / "link.yaml").symlink_to("team/pipe")
    return "link.yaml", "not_regular_file", "is a FIFO (named pipe), not a regular file"


def a_symlink_to_a_device(directory: Path) -> Hostile:
    (directory / "null.yaml").symlink_to("/dev/null")
    return "null.yaml", "not_regular_file", "is a character device, not a regular file"


def a_non_utf8_name(directory: Path) -> Hostile:
    fd = os.open(os.fsencode(directory) + b"/caf\xe9.yaml", os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, routes_yaml("x", "cafe").encode())
    os.close(fd)
    return "caf\\xe9.yaml", "undecodable_name", "is not valid UTF-8"


def a_non_utf8_directory(directory: Path) -> Hostile:
    named = Path(os.fsdecode(os.fsencode(directory) + b"/d\xe9j\xe0"))
    named.mkdir()
    (named / "r.yaml").write_text("x: 1\n")
    return "d\\xe9j\\xe0/r.yaml", "undecodable_name", "is not valid UTF-8"


def a_symlink_loop(directory: Path) -> Hostile:
    (directory / "team" / "up").symlink_to("..")
    return "team/up", "repeated_directory", "is the directory already read as"


def a_dangling_directory_link(directory: Path) -> Hostile:
    (directory / "mounted").symlink_to(directory.parent / "unmounted")
    return "mounted", "dangling_symlink", "which does not exist"


HOSTILE = {
    "fifo": a_fifo,
    "socket": a_socket,
    "symlink-to-fifo": a_symlink_to_a_fifo,
    "symlink-to-device": a_symlink_to_a_device,
    "non-utf8-name": a_non_utf8_name,
    "non-utf8-directory": a_non_utf8_directory,
    "symlink-loop": a_symlink_loop,
    "dangling-directory-link": a_dangling_directory_link,
}


def assert_reported(result: Result, directory: Path, hostile: Hostile) -> None:
    where, _code, message = hostile
    assert result.code == 1, result.output
    assert "Traceback" not in result.output
    assert f"{directory}/{where}: " in result.stderr
    assert message in result.stderr


@pytest.mark.parametrize("make", HOSTILE.values(), ids=HOSTILE.keys())
def test_validate_reports_a_hostile_entry_at_its_path(
    make: Callable[[Path], Hostile], cli: Run, config: Path
) -> None:
    hostile = make(config)
    result = cli("validate", config, "--format", "json")
    assert result.code == 1, result.output
    document = json.loads(result.stdout)
    errors = [(e["file"], e["code"]) for e in document["errors"]]
    assert errors == [(f"{config}/{hostile[0]}", hostile[1])]
    assert_reported(cli("validate", config), config, hostile)


@pytest.mark.parametrize("make", HOSTILE.values(), ids=HOSTILE.keys())
def test_plan_reports_a_hostile_entry_and_plans_nothing(
    make: Callable[[Path], Hostile], cli: Run, config: Path, database: tuple[str, Engine]
) -> None:
    url, _engine = database
    hostile = make(config)
    result = cli("--database-url", url, "--config", config, "plan")
    assert_reported(result, config, hostile)
    assert "nothing was planned or written" in result.stderr


@pytest.mark.parametrize("make", HOSTILE.values(), ids=HOSTILE.keys())
def test_apply_refuses_a_hostile_entry_and_writes_nothing(
    make: Callable[[Path], Hostile], cli: Run, config: Path, database: tuple[str, Engine]
) -> None:
    url, engine = database
    first = cli("--database-url", url, "--config", config, "apply")
    assert first.code == 0, first.output
    assert managed(engine) == ALL_ROWS
    before = dump(engine)
    hostile = make(config)
    result = cli("--database-url", url, "--config", config, "apply")
    assert_reported(result, config, hostile)
    assert dump(engine) == before


def test_every_hostile_entry_is_reported_in_one_run(cli: Run, config: Path) -> None:
    made = [make(config) for make in HOSTILE.values()]
    result = cli("validate", config, "--format", "json")
    assert result.code == 1, result.output
    errors = {(e["file"], e["code"]) for e in json.loads(result.stdout)["errors"]}
    assert errors == {(f"{config}/{where}", code) for where, code, _ in made}


def test_a_fifo_named_on_the_command_line_is_not_a_regular_file(cli: Run, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    result = cli("validate", tmp_path / "pipe")
    assert result.code == 1, result.output
    assert f"{tmp_path}/pipe: is a FIFO (named pipe), not a regular file" in result.stderr


def test_a_fifo_swapped_in_after_the_check_is_refused_without_blocking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "regular").write_text("version: 1\n")
    regular = (tmp_path / "regular").stat()
    os.mkfifo(tmp_path / "pipe.yaml")
    # The check sees a regular file; by the time of the open a FIFO is there.
    monkeypatch.setattr(Path, "stat", lambda self, **_: regular)
    with pytest.raises(ConfigInvalid) as raised:
        read_files([tmp_path / "pipe.yaml"])
    [problem] = raised.value.problems
    assert (problem.code, problem.message) == (
        "not_regular_file",
        "is a FIFO (named pipe), not a regular file",
    )


def test_control_characters_in_a_file_name_are_shown_escaped(cli: Run, config: Path) -> None:
    (config / "evil\x1b[2J\n.yaml").write_text("- not a mapping\n")
    result = cli("validate", config)
    assert result.code == 1, result.output
    assert f"{config}/evil\\x1b[2J\\n.yaml:1:1: " in result.stderr
    assert "\x1b" not in result.output


# --- symlinks: followed, each directory once ---------------------------------------------------


def test_a_symlinked_directory_is_followed_and_applied(
    cli: Run, config: Path, tmp_path: Path, database: tuple[str, Engine]
) -> None:
    url, engine = database
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "shared.yaml").write_text(routes_yaml("qwen2.5:7b", "shared-task"))
    (config / "shared").symlink_to(shared)
    result = cli("validate", config)
    assert result.code == 0, result.output
    assert "1 provider(s), 6 route(s) in 4 file(s)" in result.stdout
    assert cli("--database-url", url, "--config", config, "apply").code == 0
    assert managed(engine) == ALL_ROWS | {"route shared-task"}


def test_two_symlinks_to_one_directory_are_an_error_at_the_second(cli: Run, config: Path) -> None:
    (config / "also-team").symlink_to("team")
    result = cli("validate", config, "--format", "json")
    errors = [(e["file"], e["code"]) for e in json.loads(result.stdout)["errors"]]
    assert errors == [(f"{config}/team", "repeated_directory")]


def test_a_configmap_layout_of_symlinks_into_a_dot_directory_is_read(
    cli: Run, tmp_path: Path, database: tuple[str, Engine]
) -> None:
    url, engine = database
    directory = tmp_path / "mounted"
    data = directory / "..2026_11_30_a"
    data.mkdir(parents=True)
    (data / "providers.yaml").write_text(provider_file("http://127.0.0.1:9"))
    (data / "routes.yaml").write_text(routes_yaml("llama3.1:8b", "scoring"))
    (directory / "..data").symlink_to(data.name)
    for name in ("providers.yaml", "routes.yaml"):
        (directory / name).symlink_to(f"..data/{name}")
    result = cli("validate", directory)
    assert result.code == 0, result.output
    assert "in 2 file(s)" in result.stdout
    assert cli("--database-url", url, "--config", directory, "apply").code == 0
    assert managed(engine) == {"provider local", "route scoring"}


# --- a directory that cannot be listed -------------------------------------------------------

# Root passes every permission check; without these two capabilities it is held to the mode bits
# like anyone else, so the kernel itself refuses to list a directory of mode 000.
_WITHOUT_DAC = """\
import ctypes, os, sys
if os.geteuid() == 0:
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            sys.exit(f"cannot drop capability {capability}: {os.strerror(ctypes.get_errno())}")
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


def held_to_permissions(*args: str | Path) -> Result:
    """`python ARGS` in a process that file permissions apply to, even when the tests are root."""
    proc = subprocess.run(
        [sys.executable, "-c", _WITHOUT_DAC, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def unlistable(config: Path) -> Iterator[Callable[[], Path]]:
    """`make()` turns `config/team` into a directory that cannot be listed (mode 000)."""
    team = config / "team"

    def make() -> Path:
        team.chmod(0)
        probe = held_to_permissions("-c", f"import os; os.listdir({str(team)!r})")
        if "PermissionError" not in probe.stderr:
            pytest.skip(f"cannot make a directory unlistable here: {probe.stderr[-200:]}")
        return team

    yield make
    team.chmod(0o755)


def reconciler(*args: str | Path) -> Result:
    return held_to_permissions("-m", "reconciler", *args)


def assert_unlistable(result: Result, team: Path) -> None:
    assert result.code == 1, result.output
    assert "Traceback" not in result.output
    assert f"{team}: cannot list the directory {team}: Permission denied" in result.output


def test_validate_reports_a_directory_that_cannot_be_listed(
    config: Path, unlistable: Callable[[], Path]
) -> None:
    team = unlistable()
    result = reconciler("validate", config, "--format", "json")
    assert result.code == 1, result.output
    [error] = json.loads(result.stdout)["errors"]
    assert (error["file"], error["code"]) == (str(team), "unreadable_directory")
    assert error["message"].startswith(f"cannot list the directory {team}: Permission denied")


def test_plan_with_a_directory_that_cannot_be_listed_plans_no_deletion(
    config: Path, unlistable: Callable[[], Path], database: tuple[str, Engine], cli: Run
) -> None:
    url, _engine = database
    assert cli("--database-url", url, "--config", config, "apply").code == 0
    team = unlistable()
    result = reconciler("--database-url", url, "--config", config, "plan")
    assert_unlistable(result, team)
    assert "delete" not in result.stdout


def test_apply_with_a_directory_that_cannot_be_listed_deletes_nothing(
    config: Path, unlistable: Callable[[], Path], database: tuple[str, Engine], cli: Run
) -> None:
    url, engine = database
    assert cli("--database-url", url, "--config", config, "apply").code == 0
    assert managed(engine) == ALL_ROWS
    before = dump(engine)
    team = unlistable()
    assert_unlistable(reconciler("--database-url", url, "--config", config, "apply"), team)
    assert managed(engine) == ALL_ROWS
    assert dump(engine) == before


# --- the daemon ------------------------------------------------------------------------------


def problems_of(daemon: Daemon) -> set[tuple[str, str]]:
    error = daemon.status()["error"] or {}
    return {(p["file"], p["code"]) for p in error.get("problems", [])}


def test_a_fifo_dropped_into_the_watched_directory_is_reported_and_sigterm_still_stops_it(
    start_daemon: Callable[..., Daemon], config: Path, fake: FakeServer, sqlite_url: str
) -> None:
    (config / "providers.yaml").write_text(provider_file(fake.add("local")))
    daemon = start_daemon(sqlite_url, config)
    daemon.wait_generation(1)
    os.mkfifo(config / "pipe.yaml")
    fifo = (str(config / "pipe.yaml"), "not_regular_file")
    daemon.wait_for(lambda: fifo in problems_of(daemon), 10, "the FIFO to be reported")
    ready = daemon.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["error"]["problems"][0]["message"] == (
        "is a FIFO (named pipe), not a regular file"
    )
    # The loop still turns: an edit beside the FIFO is read (and held back by it).
    runs = 'reconciler_reconcile_runs_total{result="invalid"}'
    before = daemon.metric(runs)
    (config / "routes.yaml").write_text(routes_yaml("qwen2.5:7b", *TOP_TASKS))
    daemon.wait_for(lambda: daemon.metric(runs) > before, 10, "another invalid run")
    assert daemon.status()["generation"] == 1
    assert daemon.get("/healthz").status_code == 200
    assert daemon.stop(signal.SIGTERM, timeout=10) == 0
    assert "Traceback" not in daemon.log()


def test_a_daemon_started_beside_a_non_utf8_name_reports_it_and_applies_once_it_is_renamed(
    start_daemon: Callable[..., Daemon], config: Path, fake: FakeServer, sqlite_url: str
) -> None:
    (config / "providers.yaml").write_text(provider_file(fake.add("local")))
    bad = os.fsencode(config) + b"/caf\xe9.yaml"
    with open(bad, "wb") as handle:  # noqa: PTH123 (a bytes path)
        handle.write(routes_yaml("x", "cafe").encode())
    daemon = start_daemon(sqlite_url, config)
    name = (f"{config}/caf\\xe9.yaml", "undecodable_name")
    daemon.wait_for(lambda: name in problems_of(daemon), 10, "the name to be reported")
    assert daemon.get("/readyz").json()["error"]["kind"] == "invalid"
    with open(bad, "ab") as handle:  # noqa: PTH123  an event about that very name
        handle.write(b"# edited\n")
    Path(os.fsdecode(bad)).rename(config / "cafe.yaml")
    daemon.wait_generation(1)
    assert "reading the directory again" in daemon.log()  # watchfiles could not name the file
    daemon.wait_for(lambda: daemon.status()["error"] is None, 10, "the error to clear")
    engine = make_engine(sqlite_url)
    try:
        assert managed(engine) == ALL_ROWS | {"route cafe"}
    finally:
        engine.dispose()
    assert daemon.stop(signal.SIGTERM, timeout=10) == 0
    assert "Traceback" not in daemon.log()


def test_a_symlinked_directory_added_to_a_running_daemon_is_read_and_watched(
    start_daemon: Callable[..., Daemon], config: Path, fake: FakeServer, sqlite_url: str
) -> None:
    url = fake.add("local", models=[FakeModel("llama3.1:8b")])
    (config / "providers.yaml").write_text(provider_file(url))
    daemon = start_daemon(sqlite_url, config)  # the resync is a minute away: events only
    daemon.wait_generation(1)
    shared = config.parent / "shared"
    shared.mkdir()
    (shared / "shared.yaml").write_text(routes_yaml("m-a", "shared-task"))
    (config / "shared").symlink_to(shared)
    (change,) = daemon.wait_generation(2)["last_apply"]["changes"]
    assert change == "+ route shared-task (shared/shared.yaml:3)", change
    (shared / "shared.yaml").write_text(routes_yaml("m-b", "shared-task"))
    (change,) = daemon.wait_generation(3, timeout=10)["last_apply"]["changes"]
    assert change == '~ route shared-task (shared/shared.yaml:3): model "m-a" -> "m-b"', change
    assert daemon.stop() == 0
