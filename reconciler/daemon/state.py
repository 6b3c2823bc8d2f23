"""What the daemon knows about itself, shared by its tasks and shown by its HTTP endpoints.

Written only from the event loop's thread; the HTTP handlers run in the same loop and read it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from reconciler.core.readiness import Verdict
from reconciler.errors import Problem
from reconciler.service.queue import QueueView


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class CurrentError:
    """Why the files on disk are not (all) applied: shown until a good reconcile clears it."""

    kind: str  # invalid | refused | source_missing | database | schema
    message: str
    since: datetime
    problems: list[Problem] = field(default_factory=list)


@dataclass
class LastApply:
    at: datetime
    generation: int
    summary: str
    changes: list[str]  # "+ route scoring", at most a screenful


@dataclass
class DaemonState:
    config_dir: str
    database: str
    started_at: datetime = field(default_factory=now)
    heartbeat: float = field(default_factory=time.monotonic)
    leader: bool = False
    leader_note: str = "electing"
    config_digest: str | None = None  # of the files as last read
    applied_digest: str | None = None  # of the files last applied (or found already applied)
    reconciled_once: bool = False
    generation: int | None = None
    error: CurrentError | None = None
    last_apply: LastApply | None = None
    last_success_at: datetime | None = None
    drift: list[str] = field(default_factory=list)  # drift seen with --drift=report
    verdicts: list[Verdict] = field(default_factory=list)
    readiness_at: datetime | None = None
    queue: QueueView | None = None
    stopping: bool = False

    @property
    def files_applied(self) -> bool:
        """The files as last read are in the database, or their problem is reported."""
        if self.error is not None and self.error.kind in ("invalid", "refused", "source_missing"):
            return True
        return self.reconciled_once and self.error is None

    def summary(self) -> dict[str, Any]:
        return {
            "config_dir": self.config_dir,
            "database": self.database,
            "started_at": self.started_at.isoformat(),
            "leader": self.leader,
            "leader_note": self.leader_note,
            "generation": self.generation,
            "config_digest": self.config_digest,
            "applied_digest": self.applied_digest,
            "last_success_at": self.last_success_at.isoformat() if self.last_success_at else None,
            "last_apply": None
            if self.last_apply is None
            else {
                "at": self.last_apply.at.isoformat(),
                "generation": self.last_apply.generation,
                "summary": self.last_apply.summary,
                "changes": self.last_apply.changes,
            },
            "error": None
            if self.error is None
            else {
                "kind": self.error.kind,
                "message": self.error.message,
                "since": self.error.since.isoformat(),
                "problems": [asdict(p) for p in self.error.problems],
            },
            "drift": self.drift,
        }
