"""The database schema as `reconciler db ...` and `run --migrate` change and check it.

The revisions ship inside the package (`reconciler/migrations`), so an installed copy migrates
as well as a checkout.
"""

from __future__ import annotations

from sqlalchemy import Engine

from reconciler.adapters.db import migrate
from reconciler.adapters.db.migrate import DowngradePlan


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate up to `revision`; the revisions before and after (None: an empty database)."""
    before = migrate.current_revision(engine)
    migrate.upgrade(engine, revision)
    return before, migrate.current_revision(engine)


def plan_downgrade(engine: Engine, revision: str) -> DowngradePlan:
    """What a downgrade to `revision` would undo, and the data it would drop."""
    return migrate.plan_downgrade(engine, revision)


def downgrade(engine: Engine, revision: str, *, allow_loss: bool) -> DowngradePlan:
    """Migrate down to `revision`; refused when it drops data and `allow_loss` is not given."""
    return migrate.downgrade(engine, revision, allow_loss=allow_loss)


def revisions(engine: Engine) -> tuple[str | None, str]:
    """The database's revision (None: empty) and the newest this installation ships."""
    return migrate.current_revision(engine), migrate.head_revision()


def history() -> list[tuple[str, str | None, str]]:
    """Every shipped revision, newest first: (revision, the one before it, message)."""
    return migrate.history()


def check(engine: Engine) -> None:
    """Raise unless the database is at the newest revision and matches the models."""
    migrate.require_current(engine)
    migrate.check(engine)
