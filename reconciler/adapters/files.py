"""Finding and reading config files.

The rules, the same for the CLI and the daemon:
- Every `*.yaml` / `*.yml` below a directory, recursively, sorted by path. Dotfiles and dot
  directories (which also skips Kubernetes' `..data` and `..2024_...` entries: the visible files
  are symlinks into them) and editor leftovers are skipped.
- Only regular files are read. A FIFO, socket or device with a config file's name is an error at
  its path. It is checked with `stat` and opened with O_NONBLOCK, then checked again on the open
  descriptor, so a FIFO swapped in between can never block a read.
- Symlinks are followed, wherever they point. A symlink to a regular file is read (ConfigMap
  mounts are made of them); a symlinked directory is walked like a real one. Each real directory
  is read once per scan: a link to a directory already read (its own ancestor, a loop, or one
  also reached another way) is an error at the link. A dangling symlink is an error whatever its
  name, since it may have led to a directory.
- A directory that cannot be listed, or an entry that cannot be examined, is an error, never an
  empty directory: what it holds would otherwise be planned as deleted.
- A path that is not UTF-8 is an error, shown with its bytes escaped (`caf\\xe9.yaml`). Control
  characters in every name shown are escaped.
"""

from __future__ import annotations

import fnmatch
import gc
import os
import stat
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from reconciler.core.text import escape_control
from reconciler.core.yaml_problems import MAX_BYTES
from reconciler.errors import ConfigInvalid, Problem

YAML_SUFFIXES = (".yaml", ".yml")
IGNORED_PATTERNS = ("*~", ".#*", "#*#", "*.swp", "*.swo", "*.swx", "*.tmp", "*.bak", "4913")
# O_NONBLOCK: opening a FIFO never waits for a writer. O_NOCTTY: a terminal never becomes ours.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a directory",
}


def is_config_file(name: str) -> bool:
    """True for a name the config directory's scan picks up."""
    if name.startswith(".") or any(fnmatch.fnmatchcase(name, p) for p in IGNORED_PATTERNS):
        return False
    return name.endswith(YAML_SUFFIXES)


def display_name(path: str | os.PathLike[str]) -> str:
    """`path` as text safe to show and store: bytes that are not UTF-8 and controls escaped."""
    return escape_control(_path_bytes(path).decode("utf-8", "backslashreplace"))


def discover(paths: Iterable[Path]) -> list[Path]:
    """The config files named by `paths` (files or directories), sorted, without repeats.

    Raises `ConfigInvalid` when a path does not exist, a directory cannot be read, or no file
    is found at all.
    """
    scan = _scan(paths)
    if scan.problems:
        raise ConfigInvalid(scan.problems)
    return scan.sorted_files()


def read_files(files: Iterable[Path]) -> list[tuple[str, bytes]]:
    """Read each file as `(display name, bytes)`; reading stops just past the size limit."""
    sources, problems = _read_all(files)
    if problems:
        raise ConfigInvalid(problems)
    return sources


def load_sources(paths: Iterable[Path]) -> list[tuple[str, bytes]]:
    """`discover` then `read_files`; the problems of both are reported together."""
    scan = _scan(paths)
    sources, problems = _read_all(scan.sorted_files())
    if scan.problems or problems:
        raise ConfigInvalid([*scan.problems, *problems])
    return sources


class _Scan:
    """The files found so far, by normalised path, and the problems met finding them."""

    def __init__(self) -> None:
        self.files: dict[str, Path] = {}
        self.problems: list[Problem] = []

    def add_file(self, path: Path) -> None:
        self.files.setdefault(os.path.normpath(path), path)

    def sorted_files(self) -> list[Path]:
        return [self.files[key] for key in sorted(self.files)]


def _scan(paths: Iterable[Path]) -> _Scan:
    scan = _Scan()
    given = list(paths)
    for path in given:
        try:
            info = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            scan.problems.append(
                _problem(
                    path,
                    "not_found",
                    f"{display_name(path)} does not exist",
                    "give a config file or directory that exists",
                )
            )
            continue
        except OSError as exc:
            scan.problems.append(_unreadable(path, exc))
            continue
        if stat.S_ISDIR(info.st_mode):
            _walk(path, info, scan)
        else:  # named on purpose: read whatever its name; the read says if it is no file
            scan.add_file(path)
    if not scan.problems and not scan.files:
        names = ", ".join(display_name(p) for p in given)
        scan.problems.append(
            _problem(
                given[0] if given else Path(),
                "no_files",
                f"no *.yaml or *.yml files found in {names}",
                "add a config file, or point --config at the right directory",
            )
        )
    return scan


def _walk(root: Path, root_info: os.stat_result, scan: _Scan) -> None:
    """Add the config files below `root`, depth first in name order, each directory once.

    An explicit stack, not recursion: a hostile tree can be deeper than Python's stack.
    """
    seen = {_identity(root_info): root}
    stack = [root]
    while stack:
        stack.extend(reversed(_scan_directory(stack.pop(), seen, scan)))


def _scan_directory(directory: Path, seen: dict[tuple[int, int], Path], scan: _Scan) -> list[Path]:
    """Add `directory`'s config files to `scan`; return its subdirectories not seen yet."""
    try:
        with os.scandir(directory) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError as exc:
        scan.problems.append(_unlistable(directory, exc))
        return []
    subdirectories = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(directory, entry.name)
        try:
            info = entry.stat() if entry.is_dir() or entry.is_symlink() else None
        except FileNotFoundError:  # whatever its name: it may have led to a directory
            scan.problems.append(_dangling(path))
            continue
        except OSError as exc:  # a symlink whose target cannot be examined
            scan.problems.append(_unreadable(path, exc))
            continue
        if info is None or not stat.S_ISDIR(info.st_mode):
            if is_config_file(entry.name):
                scan.add_file(path)
            continue
        first = seen.get(_identity(info))
        if first is not None:
            scan.problems.append(_repeated(path, first))
            continue
        seen[_identity(info)] = path
        subdirectories.append(path)
    return subdirectories


def _read_all(files: Iterable[Path]) -> tuple[list[tuple[str, bytes]], list[Problem]]:
    sources = []
    problems = []
    for path in files:
        read = _read(path)
        if isinstance(read, Problem):
            problems.append(read)
        else:
            sources.append((display_name(path), read))
    return sources, problems


def _read(path: Path) -> bytes | Problem:
    """The file's first MAX_BYTES + 1 bytes, or why it is not read. Never blocks on a FIFO."""
    if not _is_utf8(path):
        return _problem(
            path,
            "undecodable_name",
            "the file name is not valid UTF-8 (shown here with its bytes escaped)",
            "rename the file (or the directory that holds it) to a UTF-8 name",
        )
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            return _not_regular(path, info.st_mode)
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        return _unreadable(path, exc)
    with os.fdopen(fd, "rb") as handle:
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):  # swapped for something else since the stat
                return _not_regular(path, mode)
            os.set_blocking(fd, True)  # a regular file: read it the ordinary way
            return handle.read(MAX_BYTES + 1)
        except OSError as exc:
            return _unreadable(path, exc)


def _not_regular(path: Path, mode: int) -> Problem:
    kind = _KINDS.get(stat.S_IFMT(mode))
    return _problem(
        path,
        "not_regular_file",
        f"is {kind}, not a regular file" if kind else "is not a regular file",
        "only regular files (or symlinks to them) are read: remove it, or move it out of "
        "the config directory",
    )


def _unreadable(path: Path, exc: OSError) -> Problem:
    return _problem(
        path,
        "unreadable",
        f"cannot read {display_name(path)}: {exc.strerror}",
        "check the file's permissions",
    )


def _dangling(link: Path) -> Problem:
    try:
        target = f" to {display_name(link.readlink())}"
    except OSError:
        target = ""
    return _problem(
        link,
        "dangling_symlink",
        f"is a symlink{target}, which does not exist",
        "point the symlink at a file or directory that exists, or remove it",
    )


def _unlistable(directory: Path, exc: OSError) -> Problem:
    return _problem(
        directory,
        "unreadable_directory",
        f"cannot list the directory {display_name(directory)}: {exc.strerror}; nothing in "
        "it is read, and nothing it declared is deleted",
        "make the directory readable and searchable for reconciler's user, or move it out of "
        "the config directory",
    )


def _repeated(link: Path, first: Path) -> Problem:
    return _problem(
        link,
        "repeated_directory",
        f"is the directory already read as {display_name(first)}, reached again through a "
        "symlink (a loop, or a second way in); each directory is read once",
        "remove the symlink, or point it at a directory that is not read already",
    )


def _problem(path: Path, code: str, message: str, hint: str) -> Problem:
    return Problem(
        file=display_name(path), line=0, column=0, path="", code=code, message=message, hint=hint
    )


def _identity(info: os.stat_result) -> tuple[int, int]:
    return (info.st_dev, info.st_ino)


def _path_bytes(path: str | os.PathLike[str]) -> bytes:
    try:
        return os.fsencode(path)
    except UnicodeEncodeError:  # a surrogate no file system gave: keep it visible, never crash
        return os.fspath(path).encode("utf-8", "surrogatepass")


def _is_utf8(path: str | os.PathLike[str]) -> bool:
    try:
        _path_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class _Pauses:
    """How many `paused_gc` blocks are open, in any thread, and whether the collector ran
    before the first: the last to close restores it. (Each block saving and restoring the
    state itself could leave it off for good when two threads' blocks overlap.)"""

    lock = threading.Lock()
    open = 0
    was_enabled = True


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic collector: building large trees of fresh objects (loading the config
    files, reading every row) triggers it uselessly. Blocks may overlap across threads."""
    with _Pauses.lock:
        if _Pauses.open == 0:
            _Pauses.was_enabled = gc.isenabled()
            gc.disable()
        _Pauses.open += 1
    try:
        yield
    finally:
        with _Pauses.lock:
            _Pauses.open -= 1
            if _Pauses.open == 0 and _Pauses.was_enabled:
                gc.enable()
