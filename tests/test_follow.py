"""How the daemon decides that the config directory has settled (`service.follow.settled`).

No watcher runs here: `wake` is never set, as with a writer that pauses without any event, so
only the check after the quiet period can see the change. Each change is made right after the
first read, deterministically, by wrapping `follow.read`.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.core import plan
from reconciler.core.config import ConfigLoader, DesiredState
from reconciler.errors import ConfigInvalid
from reconciler.service import follow
from tests.builders import provider_file, routes_file

FIRST = b"routes: {}\n"


def _settle_with_change(
    monkeypatch: pytest.MonkeyPatch, directory: Path, change: Callable[[], None]
) -> tuple[follow.Sources, str, int]:
    """`follow.settled` on `directory`, with `change()` made just after the first read; the
    result, and how many reads it took."""
    reads = 0
    real_read = follow.read

    def read(path: Path) -> follow.Sources:
        nonlocal reads
        reads += 1
        sources = real_read(path)
        if reads == 1:
            change()
        return sources

    monkeypatch.setattr(follow, "read", read)
    found = asyncio.run(follow.settled(directory, asyncio.Event(), asyncio.Event()))
    return found.sources, found.digest, reads


def _contents(sources: follow.Sources) -> dict[str, bytes]:
    assert isinstance(sources, list)
    return {Path(name).name: data for name, data in sources}


def test_a_file_written_in_place_after_the_read_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "routes.yaml"
    target.write_bytes(FIRST)
    more = b"# and a second part, written after a pause\n"

    def append() -> None:
        with target.open("ab") as f:
            f.write(more)

    sources, digest, reads = _settle_with_change(monkeypatch, tmp_path, append)
    assert _contents(sources) == {"routes.yaml": FIRST + more}
    assert digest == follow.digest(follow.read(tmp_path))
    assert reads == 2


def test_a_file_replaced_after_the_read_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "routes.yaml"
    target.write_bytes(FIRST)
    same_length = FIRST.replace(b"{}", b"[]")

    def replace() -> None:  # an editor's atomic save: a new inode, the same size
        temp = tmp_path / ".routes.yaml.new"
        temp.write_bytes(same_length)
        temp.replace(target)

    sources, _, reads = _settle_with_change(monkeypatch, tmp_path, replace)
    assert _contents(sources) == {"routes.yaml": same_length}
    assert reads == 2


def test_a_file_added_after_the_read_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.yaml").write_bytes(FIRST)
    sources, _, _ = _settle_with_change(
        monkeypatch, tmp_path, lambda: (tmp_path / "b.yaml").write_bytes(FIRST)
    )
    assert sorted(_contents(sources)) == ["a.yaml", "b.yaml"]


def test_files_left_alone_are_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.yaml").write_bytes(FIRST)
    sources, digest, reads = _settle_with_change(monkeypatch, tmp_path, lambda: None)
    assert _contents(sources) == {"a.yaml": FIRST}
    assert digest == follow.digest(sources)
    assert reads == 1


def test_a_problem_fixed_after_the_read_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "routes.yaml").write_bytes(FIRST)
    dangling = tmp_path / "gone.yaml"
    dangling.symlink_to(tmp_path / "nowhere.yaml")  # listed, cannot be read

    def fixed() -> None:
        dangling.unlink()

    sources, digest, reads = _settle_with_change(monkeypatch, tmp_path, fixed)
    assert _contents(sources) == {"routes.yaml": FIRST}  # not the problem first read
    assert digest == follow.digest(sources)
    assert reads == 2  # then marked: the second read holds while the marks do


def test_while_the_files_cannot_be_marked_what_the_read_reports_is_compared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "routes.yaml").write_bytes(FIRST)
    (tmp_path / "gone.yaml").symlink_to(tmp_path / "nowhere.yaml")

    def another() -> None:
        (tmp_path / "lost.yaml").symlink_to(tmp_path / "elsewhere.yaml")

    sources, digest, reads = _settle_with_change(monkeypatch, tmp_path, another)
    assert isinstance(sources, ConfigInvalid)
    assert sorted(Path(p.file).name for p in sources.problems) == ["gone.yaml", "lost.yaml"]
    assert digest == follow.digest(sources)
    assert reads == 3  # the first read, one that differed from it, one that matched


def test_a_missing_directory_settles_as_missing(tmp_path: Path) -> None:
    gone = tmp_path / "config"
    found = asyncio.run(follow.settled(gone, asyncio.Event(), asyncio.Event()))
    assert (found.sources, found.digest, found.loading) == (None, "missing", None)


def _settle_loading(
    directory: Path, loader: ConfigLoader, known: str | None = None
) -> tuple[follow.Settled, DesiredState | None]:
    async def settle() -> tuple[follow.Settled, DesiredState | None]:
        found = await follow.settled(directory, asyncio.Event(), asyncio.Event(), loader, known)
        return found, await found.loading if found.loading is not None else None

    return asyncio.run(settle())


def test_the_files_are_validated_while_they_settle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "providers.yaml").write_text(provider_file("http://127.0.0.1:9"))
    target = tmp_path / "routes.yaml"
    target.write_text(routes_file("first:1b"))
    real_read = follow.read
    reads = 0

    def read(path: Path) -> follow.Sources:  # the model changes after the first read
        nonlocal reads
        reads += 1
        sources = real_read(path)
        if reads == 1:
            target.write_text(routes_file("second:2b"))
        return sources

    monkeypatch.setattr(follow, "read", read)
    found, desired = _settle_loading(tmp_path, ConfigLoader())
    assert desired is not None  # the load of what settled, not of the first read
    assert desired.routes["scoring"].spec.model == "second:2b"
    final = real_read(tmp_path)
    assert isinstance(final, list)
    assert found.digest == follow.digest(final)
    assert desired.digest == ConfigLoader().load(final).digest


def test_events_that_change_nothing_leave_the_validation_under_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An editor's swap file, a backup, the resync timer's poke: each wakes the settle, and the
    files are read again, but content already being validated is not validated again."""
    (tmp_path / "providers.yaml").write_text(provider_file("http://127.0.0.1:9"))
    (tmp_path / "routes.yaml").write_text(routes_file())
    wake = asyncio.Event()
    reads, loads = 0, 0
    real_read, real_load = follow.read, follow.load

    def read(path: Path) -> follow.Sources:
        nonlocal reads
        reads += 1
        if reads <= 2:
            wake.set()  # an event arrives while the files settle
        return real_read(path)

    def load(loader: ConfigLoader, sources: list[tuple[str, bytes]]) -> DesiredState:
        nonlocal loads
        loads += 1
        return real_load(loader, sources)

    monkeypatch.setattr(follow, "read", read)
    monkeypatch.setattr(follow, "load", load)

    async def settle() -> DesiredState | None:
        found = await follow.settled(tmp_path, wake, asyncio.Event(), ConfigLoader())
        return await found.loading if found.loading is not None else None

    desired = asyncio.run(settle())
    assert reads == 3
    assert loads == 1
    assert desired is not None and "scoring" in desired.routes


def test_a_stop_abandons_the_validation_and_leaves_no_unread_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The load of a broken file has failed by the time the quiet period ends; stopping then
    returns no load, and its error is read, not reported as never retrieved."""
    (tmp_path / "routes.yaml").write_text("version: 1\nroutes: [\n")
    stop = asyncio.Event()
    real_read = follow.read

    def read(path: Path) -> follow.Sources:
        sources = real_read(path)
        stop.set()  # SIGTERM arrives while the files settle
        return sources

    monkeypatch.setattr(follow, "read", read)
    reported: list[str] = []

    async def settle() -> follow.Settled:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: reported.append(context["message"]))
        found = await follow.settled(tmp_path, asyncio.Event(), stop, ConfigLoader())
        await asyncio.sleep(0.1)
        gc.collect()  # an unread task error is reported when the task is collected
        return found

    found = asyncio.run(settle())
    assert found.loading is None
    assert reported == []


def test_files_already_applied_are_not_validated_again(tmp_path: Path) -> None:
    (tmp_path / "providers.yaml").write_text(provider_file("http://127.0.0.1:9"))
    (tmp_path / "routes.yaml").write_text(routes_file())
    applied = follow.digest(follow.read(tmp_path))
    found, desired = _settle_loading(tmp_path, ConfigLoader(), known=applied)
    assert (found.digest, found.loading, desired) == (applied, None, None)


def test_an_invalid_file_fails_its_load_and_a_discarded_load_raises_nothing(
    tmp_path: Path,
) -> None:
    (tmp_path / "routes.yaml").write_text("routes: [not, a, mapping]\n")

    async def settle() -> None:
        found = await follow.settled(tmp_path, asyncio.Event(), asyncio.Event(), ConfigLoader())
        assert found.loading is not None
        await follow.discard(found.loading)
        assert isinstance(found.loading.exception(), ConfigInvalid)

    asyncio.run(settle())


def _marks_written(ago_s: float) -> follow.Marks:
    """One file's marks, its newest time `ago_s` seconds ago (negative: in the future)."""
    at = time.time_ns() - int(ago_s * 1e9)
    return (("routes.yaml", 10, 1, at - 5 * 10**9, at),)  # renamed `ago_s` ago, written before


def _ago(seconds: float) -> int:
    return time.time_ns() - int(seconds * 1e9)


def test_the_quiet_period_counts_from_the_newest_write_and_from_the_read() -> None:
    long_ago = _ago(1.0)
    assert follow._quiet_left(_marks_written(1.0), long_ago) == 0.0  # long settled: no wait
    left = follow._quiet_left(_marks_written(0.010), long_ago)
    assert 0 < left <= follow.QUIET_S - 0.010  # the rest of the period after the write only
    # Written long ago but read just now: the wait after the read still runs.
    assert 0 < follow._quiet_left(_marks_written(1.0), _ago(0.0)) <= follow.AFTER_READ_S
    future = _marks_written(-60.0)  # a clock ahead: all of it
    assert follow._quiet_left(future, long_ago) == follow.QUIET_S
    assert follow._quiet_left(None, long_ago) == follow.QUIET_S  # files that could not be marked


def test_a_deletion_counts_as_a_write_for_the_quiet_period(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_bytes(FIRST)
    time.sleep(2 * follow.QUIET_S)  # both files are older than the quiet period
    assert follow._quiet_left(follow._marks(tmp_path), _ago(1.0)) == 0.0
    (tmp_path / "a.yaml").unlink()  # say, the first step of a checkout: more may follow
    assert follow._quiet_left(follow._marks(tmp_path), _ago(1.0)) > 0.0


def test_a_load_works_out_every_item_s_canonical_text_before_any_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "providers.yaml").write_text(provider_file("http://127.0.0.1:9"))
    (tmp_path / "routes.yaml").write_text(routes_file("first:1b"))
    sources = follow.read(tmp_path)
    assert isinstance(sources, list)
    state = follow.load(ConfigLoader(), sources)
    worked_out: list[object] = []
    monkeypatch.setattr(plan, "canonical", worked_out.append)
    items = plan.desired_items(state)  # what a plan compares: text ready since the load
    assert worked_out == []
    assert {(str(i.kind), i.key) for i in items} == {
        ("provider", "local"),
        ("route", "scoring"),
        ("route", "extraction"),
    }
    assert all(i.canonical for i in items)
