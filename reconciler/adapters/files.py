"""Finding and reading config files.

Every `*.yaml` / `*.yml` below a directory, recursively, sorted by path. Dotfiles and dot
directories (which also skips Kubernetes' `..data` and `..2024_...` entries: the visible files
are symlinks into them) and editor leftovers are skipped.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from pathlib import Path

from reconciler.core.yamldoc import MAX_BYTES
from reconciler.errors import ConfigInvalid, Problem

YAML_SUFFIXES = (".yaml", ".yml")
IGNORED_PATTERNS = ("*~", ".#*", "#*#", "*.swp", "*.swo", "*.swx", "*.tmp", "*.bak", "4913")


def is_config_file(name: str) -> bool:
    """True for a name the config directory's scan picks up."""
    if name.startswith(".") or any(fnmatch.fnmatchcase(name, p) for p in IGNORED_PATTERNS):
        return False
    return name.endswith(YAML_SUFFIXES)


def discover(paths: Iterable[Path]) -> list[Path]:
    """The config files named by `paths` (files or directories), sorted, without repeats.

    Raises `ConfigInvalid` when a path does not exist or no file is found at all.
    """
    found: dict[str, Path] = {}
    problems: list[Problem] = []
    given = list(paths)
    for path in given:
        if path.is_dir():
            for file in _walk(path):
                found.setdefault(os.path.normpath(file), file)
        elif path.is_file():
            found.setdefault(os.path.normpath(path), path)
        else:
            problems.append(
                _problem(
                    path,
                    "not_found",
                    f"{path} does not exist",
                    "give a config file or directory that exists",
                )
            )
    if not problems and not found:
        names = ", ".join(str(p) for p in given)
        problems.append(
            _problem(
                given[0] if given else Path(),
                "no_files",
                f"no *.yaml or *.yml files found in {names}",
                "add a config file, or point --config at the right directory",
            )
        )
    if problems:
        raise ConfigInvalid(problems)
    return [found[key] for key in sorted(found)]


def _walk(root: Path) -> Iterable[Path]:
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if is_config_file(name):
                yield Path(directory, name)


def read_files(files: Iterable[Path]) -> list[tuple[str, bytes]]:
    """Read each file as `(display name, bytes)`; reading stops just past the size limit."""
    out = []
    problems = []
    for path in files:
        try:
            with path.open("rb") as handle:
                out.append((str(path), handle.read(MAX_BYTES + 1)))
        except OSError as exc:
            problems.append(
                _problem(
                    path,
                    "unreadable",
                    f"cannot read {path}: {exc.strerror}",
                    "check the file's permissions",
                )
            )
    if problems:
        raise ConfigInvalid(problems)
    return out


def load_sources(paths: Iterable[Path]) -> list[tuple[str, bytes]]:
    """`discover` then `read_files`."""
    return read_files(discover(paths))


def _problem(path: Path, code: str, message: str, hint: str) -> Problem:
    return Problem(file=str(path), line=0, column=0, path="", code=code, message=message, hint=hint)
