"""Watch the config directory and say "something changed", never what.

Level-triggered: an event of any kind means "re-read the directory"; the reader decides what
changed by content. The directory is watched, never single files (a watch on a file goes blind
after an editor's atomic replace). When the directory vanishes, or inotify is not available, the
watcher falls back to polling and comes back when it can.

Symlinked directories are watched through, as the reader follows them; a watch only sees the
ones present when it starts, so a symlink to a directory that appears (or is re-pointed) starts
the watch again. An event that watchfiles cannot deliver (a file name that is not UTF-8) still
means "something changed".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import aclosing, suppress
from pathlib import Path

import watchfiles
from watchfiles._rust_notify import WatchfilesRustInternalError

from reconciler.core.text import escape_control

log = logging.getLogger(__name__)

DEBOUNCE_MS = 50  # watchfiles groups events this close together (its default is 1600)
STEP_MS = 5  # a save is reported 6 to 10 ms after it (13 to 19 ms with 10 ms steps)
RETRY_S = 1.0


async def watch_directory(
    directory: Path,
    changed: Callable[[], None],
    stop: asyncio.Event,
    *,
    force_polling: bool | None = None,
) -> None:
    """Call `changed()` after every burst of filesystem events under `directory`, until `stop`."""
    polling = force_polling
    undelivered: str | None = None  # the last such error logged: once, not on every event
    while not stop.is_set():
        if not directory.is_dir():
            await _wait(stop, RETRY_S)
            if directory.is_dir():
                log.info("config directory %s is back", directory)
                changed()
            continue
        try:
            await _watch(directory, changed, stop, polling)
        except FileNotFoundError:
            log.warning("config directory %s vanished; waiting for it", directory)
            changed()
        except OSError as exc:
            if polling:
                raise
            log.warning("cannot watch %s (%s); polling instead", directory, exc)
            polling = True
        except WatchfilesRustInternalError as exc:
            if str(exc) != undelivered:
                undelivered = str(exc)
                reason = escape_control(str(exc))
                log.warning("watching %s: %s; reading the directory again", directory, reason)
            changed()
            await _wait(stop, DEBOUNCE_MS / 1000)  # never a busy loop, whatever it raises
        # Otherwise the directory went away or was replaced: watch it again, or wait for it.


async def _watch(
    directory: Path, changed: Callable[[], None], stop: asyncio.Event, polling: bool | None
) -> None:
    """Watch until `stop`, or until `directory` is removed or replaced, or a symlink to a
    directory appears below it (then return, to be watched again).

    A watch follows the directory's inode: once that is deleted (`rm -r`, even when a new
    directory of the same name follows at once, maybe with the same inode number) no event ever
    comes again. So a burst that deletes the directory itself ends the watch, and its identity
    is checked after each burst and every RETRY_S (a symlink to it may be pointed elsewhere).
    """
    watched = _identity(directory)
    names = {str(directory.absolute()), str(directory.resolve())}
    batches = watchfiles.awatch(
        directory,
        stop_event=stop,
        debounce=DEBOUNCE_MS,
        step=STEP_MS,
        rust_timeout=int(RETRY_S * 1000),
        yield_on_timeout=True,
        force_polling=polling,
        poll_delay_ms=300,
        recursive=True,
        watch_filter=None,  # every event counts; the reader ignores what is not config
        ignore_permission_denied=True,
    )
    async with aclosing(batches):
        try:
            async for batch in batches:
                if batch:
                    changed()
                gone = any(c == watchfiles.Change.deleted and p in names for c, p in batch)
                if gone or _identity(directory) != watched:
                    log.warning("config directory %s was removed or replaced", directory)
                    changed()
                    return
                if any(_is_linked_directory(p) for c, p in batch if c != watchfiles.Change.deleted):
                    log.info("a symlinked directory under %s changed; watching it again", directory)
                    return
        except* WatchfilesRustInternalError as group:  # awatch raises it from a task group
            raise group.exceptions[0] from None


def _is_linked_directory(path: str) -> bool:
    """A symlink to a directory that the reader follows (dot directories it skips)."""
    link = Path(path)
    if link.name.startswith("."):
        return False
    try:
        return link.is_symlink() and link.is_dir()
    except OSError:  # cannot be examined: the reader reports it
        return False


def _identity(directory: Path) -> tuple[int, int] | None:
    try:
        info = directory.stat()
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
