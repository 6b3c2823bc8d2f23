"""What every handler of the daemon's HTTP server shares: pages, scrubbed JSON, short reads.

A page loads nothing from anywhere (no script, no font, no stylesheet but its own inline one),
and no text leaves the process holding a secret value it has resolved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi.responses import HTMLResponse
from sqlalchemy import Connection, Engine

from reconciler.service.redaction import redact

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


def page(html: str) -> HTMLResponse:
    """A server-rendered page, every known secret value cut out, under PAGE_HEADERS."""
    return HTMLResponse(redact(html), headers=PAGE_HEADERS)


async def read(engine: Engine, query: Callable[[Connection], Any]) -> Any:
    """`query` on a connection of its own, in a worker thread: the event loop never waits."""

    def run() -> Any:
        with engine.connect() as conn:
            return query(conn)

    return await asyncio.to_thread(run)


def jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """A row with its datetimes in ISO 8601."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
