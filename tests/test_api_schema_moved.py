"""The daemon's read API while another process moves the schema under it (a `db upgrade` of a
newer version, say): the worker reports the schema; the read endpoints keep answering, as they
did before they went through the use cases. Both engines."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import Engine, text

from reconciler.daemon.metrics import Metrics
from reconciler.daemon.state import DaemonState
from reconciler.daemon.web import create_app, host_policy

READ_ENDPOINTS = ("/api/v1/revisions", "/api/v1/jobs", "/api/v1/providers", "/api/v1/routes")


def test_the_read_endpoints_answer_when_the_schema_revision_moves(engine: Engine) -> None:
    app = create_app(engine, DaemonState("config", "db"), Metrics(), host_policy("127.0.0.1", ()))
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0006'"))

    async def get_all() -> dict[str, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return {path: (await client.get(path)).status_code for path in READ_ENDPOINTS}

    assert asyncio.run(get_all()) == dict.fromkeys(READ_ENDPOINTS, 200)
