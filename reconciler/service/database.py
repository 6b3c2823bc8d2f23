"""Opening the database for a command or the daemon, with errors a person can act on.

A database URL may carry a password twice over: `user:PASSWORD@host`, and in its query
(`?password=...`, `?sslpassword=...`, which psycopg hands to libpq). `safe_url` masks both
wherever a URL is shown; `open_database` remembers the values as secrets, so that a log line or
an error quoting one has it cut out.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, quote_plus

from sqlalchemy import Engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from reconciler.adapters import secrets
from reconciler.adapters.db.engine import (
    DriverMissing,
    UnsupportedDatabase,
    first_line,
    make_engine,
)
from reconciler.errors import StateError, TemporaryError
from reconciler.service.redaction import redact

MASK = "***"
# Query keys whose value is a credential, matched as parts of the lower-cased key: `password`
# and libpq's `sslpassword`, and the spellings other drivers use. `passfile` and `sslkey` name
# files, not secrets, and stay visible.
_SECRET_KEY_PARTS = ("password", "passwd", "pwd", "secret", "token")


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in _SECRET_KEY_PARTS)


def _query_pairs(parsed: URL) -> Iterator[tuple[str, str]]:
    for key, value in parsed.query.items():
        for one in (value,) if isinstance(value, str) else value:
            yield key, one


def safe_url(url: str) -> str:
    """The URL with its password and every credential in its query masked as `***`."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "(unparseable URL)"
    base = parsed.set(query={}).render_as_string(hide_password=True)
    shown = [
        f"{quote_plus(key)}={MASK if _is_secret_key(key) else quote_plus(value)}"
        for key, value in _query_pairs(parsed)
    ]
    return f"{base}?{'&'.join(shown)}" if shown else base


def url_secrets(url: str) -> set[str]:
    """The credential values in `url`: decoded, and as they may be written in the URL itself."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return set()
    values = [v for k, v in _query_pairs(parsed) if _is_secret_key(k)]
    if parsed.password:
        values.append(str(parsed.password))
    return {form for v in values for form in (v, quote(v, safe=""), quote_plus(v))}


def error_reason(exc: DBAPIError) -> str:
    """What the database driver said, first line only: no SQL, no parameters."""
    return first_line(exc)


@contextmanager
def open_database(url: str) -> Iterator[Engine]:
    """An engine for `url`; driver errors become reconciler errors naming the database."""
    secrets.remember(url_secrets(url))
    try:
        engine = make_engine(url)
    except DriverMissing as exc:
        raise StateError(redact(f"cannot open {safe_url(url)}: {exc}")) from None
    except (UnsupportedDatabase, ArgumentError) as exc:
        raise StateError(redact(f"bad --database-url {safe_url(url)}: {exc}")) from None
    try:
        yield engine
    except DBAPIError as exc:
        reason = first_line(exc)
        if exc.connection_invalidated or "connect" in reason.lower():
            message = f"cannot reach the database {safe_url(url)}: {reason}"
            raise TemporaryError(redact(message)) from None
        raise StateError(redact(f"database error on {safe_url(url)}: {reason}")) from None
    finally:
        engine.dispose()
