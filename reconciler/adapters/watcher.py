"""Watch the config directory and say "something changed", never what.

Level-triggered: an event of any kind means "re-read the directory"; the reader decides what
changed by content. The directory is watched, never single files (a watch on a file goes blind
after an editor's atomic replace). When the directory vanishes, or inotify is not available, the
watcher falls back to polling and comes back when it can.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import aclosing, suppress
from pathlib import Path

import watchfiles

log = logging.getLogger(__name__)

DEBOUNCE_MS = 50  # watchfiles groups events this close together (its default is 1600)
STEP_MS = 10
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
        # Otherwise the directory went away or was replaced: watch it again, or wait for it.


async def _watch(
    directory: Path, changed: Callable[[], None], stop: asyncio.Event, polling: bool | None
) -> None:
    """Watch until `stop`, or until `directory` is removed or replaced (then return).

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
        async for batch in batches:
            if batch:
                changed()
            gone = any(c == watchfiles.Change.deleted and p in names for c, p in batch)
            if gone or _identity(directory) != watched:
                log.warning("config directory %s was removed or replaced", directory)
                changed()
                return


def _identity(directory: Path) -> tuple[int, int] | None:
    try:
        info = directory.stat()
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
