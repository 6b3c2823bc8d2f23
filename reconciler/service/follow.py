"""Following the config directory as the daemon does: its events, and its files once settled.

An event means only "something changed": whatever woke the daemon, it reads the whole directory
again and compares by content. A read counts as settled when no event came and nothing was
written for QUIET_S. The watcher already waits for a pause in the events; this catches a writer
that pauses without any. The size, inode and modification and change times of each file and of
each directory holding one (their marks; a deletion or a rename moves a directory's times) are
taken before the read; the daemon waits until QUIET_S has passed since the newest of those
times, and AFTER_READ_S since its read, then takes them again: unchanged, the read stands. The
files are validated during the wait.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from reconciler.adapters.files import discover, display_name, load_sources, paused_gc
from reconciler.adapters.watcher import watch_directory
from reconciler.core.config import ConfigLoader, DesiredState
from reconciler.core.plan import prepare
from reconciler.errors import ConfigInvalid

# The files as read: their bytes, None when they are gone, or why one cannot be read.
Sources = list[tuple[str, bytes]] | ConfigInvalid | None

# What a write to a file (or a directory's entries) moves: path, size, inode, modification and
# change times.
Marks = tuple[tuple[str, int, int, int, int], ...]

# From the newest write: saves a few tens of milliseconds apart (a script, a checkout) are one.
QUIET_S = 0.040
# And from the daemon's read: a machine slow enough to delay the writer delays the watcher too,
# so the wait stretches with the load, as the writer's pauses do.
AFTER_READ_S = 0.025
MAX_SETTLE_ROUNDS = 40


async def watch(
    directory: Path,
    changed: Callable[[], None],
    stop: asyncio.Event,
    *,
    force_polling: bool | None = None,
) -> None:
    """Call `changed()` after every burst of filesystem events under `directory`, until `stop`;
    polls when the directory cannot be watched (or `force_polling`)."""
    await watch_directory(directory, changed, stop, force_polling=force_polling)


def read(directory: Path) -> Sources:
    """The config files; None when the directory or every file is gone; the problems when one
    cannot be read (a dangling symlink, a FIFO, a directory that cannot be listed)."""
    try:
        return load_sources([directory])
    except ConfigInvalid as exc:
        if all(p.code in ("not_found", "no_files") for p in exc.problems):
            return None
        return exc


def digest(sources: Sources) -> str:
    """A digest of what `read` returned: equal digests, equal files."""
    if sources is None:
        return "missing"
    if isinstance(sources, ConfigInvalid):
        text = "\n".join(f"{p.file}:{p.code}:{p.message}" for p in sources.problems)
        return "unreadable:" + hashlib.sha256(text.encode()).hexdigest()
    hashed = hashlib.sha256()
    for name, data in sources:
        hashed.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return hashed.hexdigest()


@dataclass(frozen=True)
class Settled:
    """Settled files, their digest, and their validation when it was started while they
    settled: a task to await before the loader is used again."""

    sources: Sources
    digest: str
    loading: asyncio.Task[DesiredState] | None = None


async def settled(
    directory: Path,
    wake: asyncio.Event,
    stop: asyncio.Event,
    loader: ConfigLoader | None = None,
    known: str | None = None,
) -> Settled:
    """The directory's files once no event set `wake` and no file was written for QUIET_S;
    after MAX_SETTLE_ROUNDS of changes, the latest read.

    With `loader`, each read's files are validated during the quiet period that follows it,
    unless their digest is `known` (already applied): when they hold, the load is done too.
    When `stop` is set, the load under way is abandoned and none is returned.
    """
    wake.clear()
    current = await asyncio.to_thread(_read_marked, directory)
    loading = _load_soon(loader, current, known)
    for _ in range(MAX_SETTLE_ROUNDS):
        await asyncio.sleep(_quiet_left(current.marks, current.at))
        if stop.is_set():
            break
        woke = wake.is_set()
        wake.clear()
        marked = not woke and current.marks is not None
        if marked and await asyncio.to_thread(_marks, directory) == current.marks:
            return Settled(current.sources, current.digest, loading)
        # More events, a change, or files that could not all be marked (their content tells).
        previous = current.digest
        current = await asyncio.to_thread(_read_marked, directory)
        if current.digest != previous:  # the load under way is of other content: start again
            await discard(loading)  # the loader serves one load at a time
            loading = _load_soon(loader, current, known)
        if not woke and current.marks is None and current.digest == previous:
            return Settled(current.sources, current.digest, loading)
    if stop.is_set():
        _abandon(loading)
        loading = None
    return Settled(current.sources, current.digest, loading)


class _Read(NamedTuple):
    marks: Marks | None
    sources: Sources
    digest: str
    at: int  # time.time_ns() when the read began


def _read_marked(directory: Path) -> _Read:
    """The files' marks, taken before they are read; the files as `read` returns them; their
    digest (hashed here, off the event loop); when the read began."""
    at = time.time_ns()
    marks = _marks(directory)
    sources = read(directory)
    return _Read(marks, sources, digest(sources), at)


def _load_soon(
    loader: ConfigLoader | None, files: _Read, known: str | None
) -> asyncio.Task[DesiredState] | None:
    if loader is None or not isinstance(files.sources, list) or files.digest == known:
        return None
    return asyncio.ensure_future(asyncio.to_thread(load, loader, files.sources))


def _abandon(loading: asyncio.Task[DesiredState] | None) -> None:
    """Stop waiting for a load. Cancelling also marks the error of a load that has already
    failed as seen, so none is reported as never retrieved."""
    if loading is not None:
        loading.cancel()


async def discard(loading: asyncio.Task[DesiredState] | None) -> None:
    """Wait for a load whose result is no longer wanted; its errors with it."""
    if loading is not None:
        with suppress(Exception):
            await loading


def _quiet_left(marks: Marks | None, read_at: int) -> float:
    """Seconds until QUIET_S will have passed since the newest write (or rename) among the
    marks, and AFTER_READ_S since `read_at`; all of QUIET_S when the files could not be marked
    or one seems written in the future."""
    now = time.time_ns()
    after_read = AFTER_READ_S - (now - read_at) / 1e9
    if not marks:
        return QUIET_S
    newest = max(max(mark[3], mark[4]) for mark in marks)
    after_write = QUIET_S - (now - newest) / 1e9
    if after_write > QUIET_S:
        return QUIET_S
    return max(0.0, after_write, after_read)


def _marks(directory: Path) -> Marks | None:
    """The marks of each config file and of the directories that hold them, the given one
    included (deleting or renaming a file moves its directory's times), sorted by path; None
    when one cannot be listed or stat'ed."""
    try:
        files = discover([directory])
        folders = sorted({directory, *(path.parent for path in files)})
        stats = [(str(path), path.stat()) for path in [*folders, *files]]
    except (ConfigInvalid, OSError):
        return None
    return tuple(
        (name, info.st_size, info.st_ino, info.st_mtime_ns, info.st_ctime_ns)
        for name, info in stats
    )


def load(loader: ConfigLoader, sources: list[tuple[str, bytes]]) -> DesiredState:
    """Validate the files, the collector paused: its passes over a large config cost more than
    the load itself. The new items' essences are worked out too, while the files settle, rather
    than when the plan compares them."""
    with paused_gc():
        state = loader.load(sources)
        prepare(state)
        return state


def missing_message(directory: Path) -> str:
    """What the daemon says when the directory has no config files: it deletes nothing."""
    return (
        f"source missing: {display_name(directory)} has no config files (or is gone); keeping "
        "the database as it is, nothing is deleted"
    )
