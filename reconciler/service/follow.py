"""Following the config directory as the daemon does: its events, and its files once settled.

An event means only "something changed": whatever woke the daemon, it reads the whole directory
again and compares by content. A read counts as settled when no event came and the content did
not change for QUIET_S after it. The watcher already waits for a pause in the events; this
catches a writer that pauses without any.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path

from reconciler.adapters.files import display_name, load_sources, paused_gc
from reconciler.adapters.watcher import watch_directory
from reconciler.core.config import ConfigLoader, DesiredState
from reconciler.errors import ConfigInvalid

# The files as read: their bytes, None when they are gone, or why one cannot be read.
Sources = list[tuple[str, bytes]] | ConfigInvalid | None

QUIET_S = 0.025
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


async def settled(directory: Path, wake: asyncio.Event, stop: asyncio.Event) -> tuple[Sources, str]:
    """The directory's files and their digest, once no event set `wake` and nothing changed for
    QUIET_S; after MAX_SETTLE_ROUNDS of changes, the latest read."""
    wake.clear()
    sources = await asyncio.to_thread(read, directory)
    previous = digest(sources)
    for _ in range(MAX_SETTLE_ROUNDS):
        await asyncio.sleep(QUIET_S)
        if stop.is_set():
            break
        if wake.is_set():  # more events: read again after another quiet period
            wake.clear()
            sources = await asyncio.to_thread(read, directory)
            previous = digest(sources)
            continue
        sources = await asyncio.to_thread(read, directory)
        current = digest(sources)
        if current == previous:
            return sources, current
        previous = current
    return sources, previous


def load(loader: ConfigLoader, sources: list[tuple[str, bytes]]) -> DesiredState:
    """Validate the files, the collector paused: its passes over a large config cost more than
    the load itself."""
    with paused_gc():
        return loader.load(sources)


def missing_message(directory: Path) -> str:
    """What the daemon says when the directory has no config files: it deletes nothing."""
    return (
        f"source missing: {display_name(directory)} has no config files (or is gone); keeping "
        "the database as it is, nothing is deleted"
    )
