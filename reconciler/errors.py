"""reconciler's error hierarchy.

    ReconcilerError
    ├── ConfigInvalid        permanent: fix the files (carries every Problem found)
    ├── StateError           permanent: the database or a saved plan disagrees with what was asked
    │   ├── SchemaMismatch   the database schema is behind or ahead of the code
    │   ├── StalePlan        a saved plan no longer matches the database
    │   └── UnsafePlan       a guard refused the plan (mass deletion, protected rows)
    └── TemporaryError       retry later: a lock was busy, a connection dropped

Every message names the object, the place and the fix. No message ever holds a secret value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One located problem in the config files."""

    file: str
    line: int
    column: int
    path: str
    code: str
    message: str
    hint: str = ""

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.file, self.line, self.column, self.code)


class ReconcilerError(Exception):
    """Base of every error reconciler raises on purpose."""


class ConfigInvalid(ReconcilerError):
    """The config files are invalid; `problems` holds every problem found, sorted by place."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = sorted(problems, key=Problem.sort_key)
        first = self.problems[0] if self.problems else None
        summary = f"{first.file}:{first.line}:{first.column}: {first.message}" if first else ""
        super().__init__(f"{len(self.problems)} problem(s) in the config files; first: {summary}")


class StateError(ReconcilerError):
    """The database or a saved plan does not allow the requested action."""


class SchemaMismatch(StateError):
    """The database schema is not at the revision this code expects."""


class StalePlan(StateError):
    """A saved plan was made against a state the database is no longer in."""


class UnsafePlan(StateError):
    """A safety guard refused the plan."""


class TemporaryError(ReconcilerError):
    """A condition that may clear by itself; the same action can be retried."""


class LockTimeout(TemporaryError):
    """Another process held the apply lock for longer than the caller would wait."""
