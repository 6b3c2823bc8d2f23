"""The databases benchmarks run against: a SQLite file, or a PostgreSQL database of their own."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from reconciler.adapters.db.engine import make_engine

POSTGRES_URL = os.environ.get(
    "RECONCILER_BENCH_POSTGRES_URL",
    os.environ.get("RECONCILER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
)


def postgres_unreachable() -> str | None:
    """Why PostgreSQL cannot be used, or None when it answers."""
    engine = make_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        return f"{POSTGRES_URL} is unreachable ({str(exc.orig).strip()[:120]})"
    finally:
        engine.dispose()
    return None


@contextmanager
def bench_database(engine_name: str, tmp: Path, filename: str = "bench.db") -> Iterator[str]:
    """A database URL of the benchmark's own: a SQLite file, or a PostgreSQL database."""
    if engine_name == "sqlite":
        yield f"sqlite:///{tmp / filename}"
        return
    name = f"reconciler_bench_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
