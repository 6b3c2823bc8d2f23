"""The plan as data: what is desired and observed of each row, and the actions, refusals and
counts that `plan.make_plan` finds between them. Frozen dataclasses and enums, nothing else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

PLAN_FORMAT_VERSION = 1
MANAGED = "config"
ALLOW_MASS_DELETE = "--allow-mass-delete"  # the option of `reconciler apply` that waives the guard
OPTIONAL_ROUTE_FIELDS = ("prompt", "output_schema")


Essence = dict[str, Any]


class Kind(StrEnum):
    provider = "provider"
    route = "route"


class Op(StrEnum):
    create = "create"
    update = "update"
    delete = "delete"
    adopt = "adopt"


@dataclass(frozen=True, slots=True)
class Desired:
    kind: Kind
    key: str
    essence: Essence
    source_file: str | None = None
    source_line: int | None = None
    canonical: str | None = None  # the essence as canonical JSON, when already known


@dataclass(frozen=True, slots=True)
class Observed:
    kind: Kind
    key: str
    essence: Essence
    managed_by: str
    spec_hash: str | None

    @property
    def managed(self) -> bool:
        return self.managed_by == MANAGED

    @property
    def drifted(self) -> bool:
        """Managed, and changed outside the files since the last apply wrote it."""
        return (
            self.managed
            and self.spec_hash is not None
            and self.spec_hash != essence_hash(self.essence)
        )


@dataclass(frozen=True, slots=True)
class FieldChange:
    path: str
    old: Any
    new: Any


@dataclass(frozen=True, slots=True)
class Action:
    op: Op
    kind: Kind
    key: str
    changes: tuple[FieldChange, ...] = ()
    drift: bool = False
    essence: Essence | None = None  # the essence to write; None for a delete
    source_file: str | None = None
    source_line: int | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why apply refuses a plan, and the option of `reconciler apply` that overrides it, if any."""

    reason: str
    override: str | None = None

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True, slots=True)
class Plan:
    """What apply would do, in display order: deletions first, then providers, then routes.

    `refusals` holds every reason apply would refuse it: `plan` shows exactly what apply checks.
    """

    actions: tuple[Action, ...]
    unchanged: int
    unmanaged: tuple[tuple[Kind, str], ...]
    base_digest: str
    config_digest: str
    refusals: tuple[Refusal, ...] = ()

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)

    def count(self, op: Op) -> int:
        return sum(1 for a in self.actions if a.op is op)


def essence_hash(essence: Mapping[str, Any]) -> str:
    """A stable hash of an essence (sorted keys, compact separators)."""
    return hashlib.sha256(canonical(essence).encode()).hexdigest()


def canonical(essence: Mapping[str, Any]) -> str:
    """An essence as compact JSON text with sorted keys."""
    return json.dumps(essence, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
