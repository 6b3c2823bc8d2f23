"""Opening the database for a command, with errors a person can act on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from reconciler.adapters.db.engine import UnsupportedDatabase, first_line, make_engine
from reconciler.errors import StateError, TemporaryError


def safe_url(url: str) -> str:
    """The URL with any password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable URL)"


@contextmanager
def open_database(url: str) -> Iterator[Engine]:
    """An engine for `url`; driver errors become reconciler errors naming the database."""
    try:
        engine = make_engine(url)
    except (UnsupportedDatabase, ArgumentError) as exc:
        raise StateError(f"bad --database-url {safe_url(url)}: {exc}") from None
    try:
        yield engine
    except DBAPIError as exc:
        reason = first_line(exc)
        if exc.connection_invalidated or "connect" in reason.lower():
            raise TemporaryError(f"cannot reach the database {safe_url(url)}: {reason}") from None
        raise StateError(f"database error on {safe_url(url)}: {reason}") from None
    finally:
        engine.dispose()
