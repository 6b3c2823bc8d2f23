"""The editor matrix: however a file is saved, the daemon applies only final contents.

Each test runs `reconciler run` as a real process on real files and records what the database
went through (tests/route_recorder.py): a sampler thread reads the routes table every ~10 ms, and
every applied revision's plan is read back from `reconcile_revisions`. Every state the database was
ever seen in must be a complete version of the files, and no delete may happen unless the final
files say so (and then only once the files have settled for DELETE_SETTLE_S).
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.daemon.worker import DELETE_SETTLE_S
from reconciler.service import follow
from tests.builders import TWENTY_TASKS, provider_file, task_routes
from tests.daemon_harness import Daemons
from tests.fakeprovider import FakeServer
from tests.gitrepo import git
from tests.route_recorder import Recorder, version


@pytest.fixture
def record(start_daemon: Daemons) -> Iterator[Recorder]:
    """`record(db_url, *daemon_args)`: see `Recorder`; sampling stops when the test ends."""
    recorder = Recorder(start_daemon)
    yield recorder
    recorder.close()


@pytest.fixture
def provider_url(fake: FakeServer) -> str:
    return fake.add("local")


def write_slowly(path: Path, text: str, chunks: int = 5, pause: float = 0.02) -> None:
    """Truncate, then write `text` in `chunks` pieces, flushed one by one, `pause` apart."""
    data = text.encode()
    size = -(-len(data) // chunks)
    with path.open("wb") as handle:
        for start in range(0, len(data), size):
            handle.write(data[start : start + size])
            handle.flush()
            time.sleep(pause)


def replace_atomically(directory: Path, name: str, temp_name: str, text: str) -> None:
    temp = directory / temp_name
    write_slowly(temp, text, chunks=3, pause=0.1)  # the daemon sees the temp file half-written
    with temp.open("rb") as handle:
        os.fsync(handle.fileno())
    temp.replace(directory / name)


RUNS_INVALID = 'reconciler_reconcile_runs_total{result="invalid"}'
RUNS_APPLIED = 'reconciler_reconcile_runs_total{result="applied"}'


# --- the matrix ------------------------------------------------------------------------------


def test_a_temp_file_renamed_over_the_config_is_applied_once_and_its_draft_never(
    record: Recorder,
    db_url: str,
) -> None:
    scene = record(db_url)
    directory = scene.directory
    # Python's and editors' `routes.yaml.tmp`, then `.routes.yaml.XXXXXX` as mkstemp names it.
    # Each draft is written slowly, so the daemon reads the directory while it is half-written.
    replace_atomically(directory, "routes.yaml", "routes.yaml.tmp", task_routes("m-b"))
    scene.wait_state(version("m-b"))
    replace_atomically(directory, "routes.yaml", ".routes.yaml.Xk3f9a", task_routes("m-c"))
    scene.wait_state(version("m-c"))
    time.sleep(0.2)
    assert [r.ops for r in scene.revisions()] == [Counter(update=20), Counter(update=20)]
    assert "deletion(s) wait" not in scene.daemon.log()  # a draft was never read as config
    scene.check([version("m-a"), version("m-b"), version("m-c")], version("m-c"))


def test_a_vim_save_with_backup_probe_and_swap_file_applies_only_the_new_content(
    record: Recorder,
    write_config: Callable[..., Path],
    provider_url: str,
    db_url: str,
) -> None:
    directory = write_config(
        {"providers.yaml": provider_file(provider_url), "routes.yaml": task_routes("m-a")}
    )
    swap = directory / ".routes.yaml.swp"
    swap.write_bytes(b"b0VIM 9.0\0" + b"\0" * 4086)
    scene = record(db_url, directory=directory)
    routes_file = directory / "routes.yaml"
    routes_file.rename(directory / "routes.yaml~")
    probe = directory / "4913"
    probe.write_bytes(b"")
    probe.unlink()
    # Far longer than vim takes, as on a slow disk: the daemon sees no routes.yaml at all, a
    # valid config that deletes every route. It must wait, not delete (nor refuse).
    time.sleep(0.3)
    routes_file.write_text(task_routes("m-b"), encoding="utf-8")
    swap.write_bytes(b"b0VIM 9.0\1" + b"\0" * 4086)
    (directory / "routes.yaml~").unlink()
    scene.wait_state(version("m-b"))
    time.sleep(DELETE_SETTLE_S + 0.2)  # a delayed deletion would show by now
    assert swap.exists()
    assert scene.daemon.log().count("20 deletion(s) wait") == 1  # the window was seen, once
    assert [r.ops for r in scene.revisions()] == [Counter(update=20)]
    scene.check([version("m-a"), version("m-b")], version("m-b"))


def test_a_truncate_then_slow_write_applies_only_the_complete_file(
    record: Recorder,
    db_url: str,
) -> None:
    scene = record(db_url)
    directory = scene.directory
    write_slowly(directory / "routes.yaml", task_routes("m-b"), chunks=5, pause=0.02)
    scene.wait_state(version("m-b"))
    time.sleep(DELETE_SETTLE_S + 0.2)
    assert [r.ops for r in scene.revisions()] == [Counter(update=20)]
    assert "problem(s) in the config files" not in scene.daemon.log()
    scene.check([version("m-a"), version("m-b")], version("m-b"))


def test_three_atomic_replaces_in_a_row_apply_only_the_last(
    record: Recorder,
    db_url: str,
) -> None:
    """Three saves 30 ms apart are one burst: only the last is applied. What makes them one is
    when the files were renamed (their change times, which the daemon reads too), and a machine
    loaded enough can stretch the writer's 30 ms past the quiet period: such a burst is not one,
    so it is written again, at most three times, until one truly was."""
    scene = record(db_url)
    directory = scene.directory
    allowed = [version("m-a")]  # every state the database may show, in order
    for attempt in range(3):
        before = len(scene.revisions())
        models = [f"m-{attempt}-{n}" for n in range(3)]
        renamed: list[float] = []
        for model in models:
            temp = directory / ".routes.yaml.new"
            temp.write_text(task_routes(model), encoding="utf-8")
            temp.replace(directory / "routes.yaml")
            renamed.append((directory / "routes.yaml").stat().st_ctime_ns / 1e9)
            time.sleep(0.03)
        scene.wait_state(version(models[-1]))
        time.sleep(0.3)
        if max(b - a for a, b in itertools.pairwise(renamed)) < follow.QUIET_S - 0.005:
            allowed.append(version(models[-1]))
            break
        allowed += [version(model) for model in models]  # stretched: any of them may show
    else:
        pytest.fail("three saves 30 ms apart took longer than the quiet period, three times")
    assert [r.ops for r in scene.revisions()[before:]] == [Counter(update=20)]
    scene.check(allowed, allowed[-1])


def test_a_git_checkout_of_another_branch_applies_it_and_deletes_once_after_settling(
    record: Recorder,
    write_config: Callable[..., Path],
    provider_url: str,
    db_url: str,
) -> None:
    directory = write_config(
        {"providers.yaml": provider_file(provider_url), "routes.yaml": task_routes("m-a")}
    )
    git(directory, "init", "-q", "-b", "main")
    git(directory, "add", "-A")
    git(directory, "commit", "-q", "-m", "main")
    git(directory, "checkout", "-q", "-b", "other")
    (directory / "routes.yaml").write_text(task_routes("m-b", TWENTY_TASKS[:-1]), encoding="utf-8")
    git(directory, "commit", "-q", "-am", "other: new model, one route fewer")
    git(directory, "checkout", "-q", "main")
    scene = record(db_url, directory=directory)
    before = time.monotonic()
    git(directory, "checkout", "-q", "other")
    final = version("m-b", TWENTY_TASKS[:-1])
    scene.wait_state(final, timeout=DELETE_SETTLE_S + 5)
    assert scene.sampler.first_seen(final) - before >= DELETE_SETTLE_S
    time.sleep(0.3)
    assert [(r.ops, r.deleted) for r in scene.revisions()] == [
        (Counter(update=19, delete=1), [TWENTY_TASKS[-1]])
    ]
    scene.check([version("m-a"), final], final)


def test_a_configmap_data_symlink_swap_applies_the_new_content(
    record: Recorder,
    tmp_path: Path,
    provider_url: str,
    db_url: str,
) -> None:
    directory = tmp_path / "config"
    old = directory / "..2026_11_30_a"
    old.mkdir(parents=True)
    (old / "providers.yaml").write_text(provider_file(provider_url), encoding="utf-8")
    (old / "routes.yaml").write_text(task_routes("m-a"), encoding="utf-8")
    (directory / "..data").symlink_to(old.name)
    for name in ("providers.yaml", "routes.yaml"):
        (directory / name).symlink_to(f"..data/{name}")
    scene = record(db_url, directory=directory)
    new = directory / "..2026_11_30_b"
    new.mkdir()
    (new / "providers.yaml").write_text(provider_file(provider_url), encoding="utf-8")
    (new / "routes.yaml").write_text(task_routes("m-b"), encoding="utf-8")
    (directory / "..data_tmp").symlink_to(new.name)
    (directory / "..data_tmp").rename(directory / "..data")  # atomic, as kubelet does
    shutil.rmtree(old)
    scene.wait_state(version("m-b"))
    time.sleep(0.3)
    assert [r.ops for r in scene.revisions()] == [Counter(update=20)]
    scene.check([version("m-a"), version("m-b")], version("m-b"))


def test_a_deleted_directory_is_source_missing_deletes_nothing_and_comes_back(
    record: Recorder,
    write_config: Callable[..., Path],
    provider_url: str,
    db_url: str,
) -> None:
    files = {"providers.yaml": provider_file(provider_url), "routes.yaml": task_routes("m-a")}
    directory = write_config(files)
    scene = record(db_url, directory=directory)  # no short --resync: the watcher alone must notice
    daemon = scene.daemon
    shutil.rmtree(directory)
    daemon.wait_for(
        lambda: (daemon.status()["error"] or {}).get("kind") == "source_missing",
        what="source_missing",
    )
    time.sleep(1.1)  # the daemon looks for it again meanwhile
    assert daemon.get("/healthz").status_code == 200
    assert daemon.get("/readyz").status_code == 200  # the problem is reported
    assert scene.sampler.current == version("m-a")
    assert daemon.log().count("source missing") == 1
    directory.mkdir()
    time.sleep(1.2)  # an empty directory: still source_missing, and watched again
    (directory / "providers.yaml").write_text(files["providers.yaml"], encoding="utf-8")
    (directory / "routes.yaml").write_text(task_routes("m-b"), encoding="utf-8")
    scene.wait_state(version("m-b"))
    daemon.wait_for(lambda: daemon.status()["error"] is None, what="the error to clear")
    # A deploy script's `rm -rf config && cp -r new config`: a new directory at once, then an
    # edit in it, which only a watch on the new directory sees.
    staging = directory.with_name("staging")
    staging.mkdir()
    (staging / "providers.yaml").write_text(files["providers.yaml"], encoding="utf-8")
    (staging / "routes.yaml").write_text(task_routes("m-c"), encoding="utf-8")
    shutil.rmtree(directory)
    shutil.copytree(staging, directory)
    scene.wait_state(version("m-c"))
    time.sleep(0.3)
    (directory / "routes.yaml").write_text(task_routes("m-d"), encoding="utf-8")
    scene.wait_state(version("m-d"), what="the edit in the new directory")
    assert [r.ops for r in scene.revisions()] == [Counter(update=20)] * 3
    scene.check([version(m) for m in ("m-a", "m-b", "m-c", "m-d")], version("m-d"))


# Only concerns the files and the log: an invalid file never reaches the database, so SQLite.
def test_an_invalid_file_kept_over_many_resyncs_is_logged_once(
    record: Recorder,
    sqlite_url: str,
) -> None:
    scene = record(sqlite_url, "--resync", "1")
    directory = scene.directory
    daemon = scene.daemon
    text = task_routes("m-b")
    (directory / "routes.yaml").write_text(text[: text.index("num_ctx", 500)], encoding="utf-8")
    daemon.wait_for(lambda: daemon.metric(RUNS_INVALID) >= 2, what="the error and a resync")
    lines = len(daemon.log().splitlines())
    daemon.wait_for(lambda: daemon.metric(RUNS_INVALID) >= 7, what="five more resyncs")
    log = daemon.log()
    assert len(log.splitlines()) == lines, log
    assert log.count("problem(s) in the config files") == 1
    assert daemon.status()["error"]["kind"] == "invalid"
    (directory / "routes.yaml").write_text(task_routes("m-a"), encoding="utf-8")
    daemon.wait_for(lambda: daemon.status()["error"] is None, what="the error to clear")
    assert scene.revisions() == []
    scene.check([version("m-a")], version("m-a"))


def test_fifty_writes_in_ten_seconds_end_in_the_last_with_a_bounded_number_of_applies(
    record: Recorder,
    db_url: str,
) -> None:
    scene = record(db_url, model="m-00")
    directory = scene.directory
    models = [f"m-{i:02d}" for i in range(1, 51)]
    for model in models:
        (directory / "routes.yaml").write_text(task_routes(model), encoding="utf-8")
        time.sleep(0.2)
    scene.wait_state(version(models[-1]))
    time.sleep(0.3)
    applied = scene.revisions()
    assert 1 <= len(applied) <= 50, len(applied)
    assert all(r.ops == Counter(update=20) for r in applied)
    assert scene.daemon.metric(RUNS_APPLIED) == 1 + len(applied)
    scene.check([version("m-00"), *map(version, models)], version(models[-1]))


def test_half_the_routes_removed_in_one_edit_are_deleted_after_the_settle_time(
    record: Recorder,
    db_url: str,
) -> None:
    scene = record(db_url)
    directory = scene.directory
    half = version("m-a", TWENTY_TASKS[:10])
    before = time.monotonic()
    (directory / "routes.yaml").write_text(task_routes("m-a", TWENTY_TASKS[:10]), encoding="utf-8")
    scene.wait_state(half, timeout=5, what="the deletions")
    waited = scene.sampler.first_seen(half) - before
    assert DELETE_SETTLE_S <= waited <= 3.0, waited
    assert [(r.ops, r.deleted) for r in scene.revisions()] == [
        (Counter(delete=10), list(TWENTY_TASKS[10:]))
    ]
    assert re.search(r"10 deletion\(s\) wait \d\.\ds", scene.daemon.log())
    scene.check([version("m-a"), half], half)
