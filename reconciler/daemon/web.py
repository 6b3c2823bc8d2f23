"""The daemon's HTTP endpoints: health, readiness, metrics, a read-only API and a status page.

Handlers only read: the daemon's in-memory state, and the database through short read-only
queries run in a worker thread. Nothing here ever writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, text

from reconciler.adapters.db import queue_store, readiness_store, store
from reconciler.core.readiness import all_required_servable
from reconciler.daemon.metrics import Metrics
from reconciler.daemon.page import status_page
from reconciler.daemon.state import DaemonState
from reconciler.readiness import verdict_document

HEARTBEAT_STALE_S = 10.0


def create_app(engine: Engine, state: DaemonState, metrics: Metrics) -> FastAPI:
    app = FastAPI(
        title="reconciler",
        summary="LLM provider settings and task routes as code: the daemon's read-only API.",
        version="1",
    )

    @app.get("/healthz", tags=["health"])
    async def healthz() -> JSONResponse:
        """Alive: the event loop ticks. Never depends on a provider or the database."""
        age = time.monotonic() - state.heartbeat
        alive = age < HEARTBEAT_STALE_S
        body = {"status": "ok" if alive else "stalled", "heartbeat_age_s": round(age, 3)}
        return JSONResponse(body, status_code=200 if alive else 503)

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        """The database answers, and the files on disk are applied or their error reported."""
        database_ok, database_note = await asyncio.to_thread(_ping, engine)
        reasons = [] if database_ok else [f"database: {database_note}"]
        if not state.files_applied:
            error = state.error
            reasons.append(f"config not applied yet: {error.message}" if error else "starting")
        body = {
            "status": "ready" if not reasons else "not_ready",
            "reasons": reasons,
            "leader": state.leader,
            "generation": state.generation,
            "error": state.summary()["error"],
        }
        return JSONResponse(body, status_code=200 if not reasons else 503)

    @app.get("/readyz/tasks", tags=["health"])
    async def readyz_tasks() -> JSONResponse:
        """Every required task ready or degraded."""
        now = datetime.now(UTC)
        servable = bool(state.readiness_at) and all_required_servable(state.verdicts)
        body = {
            "status": "ready" if servable else "not_ready",
            "checked_at": state.readiness_at.isoformat() if state.readiness_at else None,
            "tasks": [verdict_document(v, now) for v in state.verdicts],
        }
        return JSONResponse(body, status_code=200 if servable else 503)

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def prometheus() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    _add_api(app, engine, state)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(status_page(state, datetime.now(UTC)))

    return app


def _add_api(app: FastAPI, engine: Engine, state: DaemonState) -> None:
    """The read-only `/api/v1` endpoints."""

    @app.get("/api/v1/status", tags=["api"])
    async def api_status() -> dict[str, Any]:
        """The daemon: leader or not, last apply, current error, drift."""
        return state.summary()

    @app.get("/api/v1/readiness", tags=["api"])
    async def api_readiness() -> dict[str, Any]:
        """The latest readiness verdict of every task."""
        now = datetime.now(UTC)
        return {
            "checked_at": state.readiness_at.isoformat() if state.readiness_at else None,
            "ready": all_required_servable(state.verdicts),
            "tasks": [verdict_document(v, now) for v in state.verdicts],
        }

    @app.get("/api/v1/providers", tags=["api"])
    async def api_providers() -> list[dict[str, Any]]:
        """The provider rows (secrets appear as their `{env: NAME}` reference only)."""
        rows: list[dict[str, Any]] = await _read(engine, readiness_store.read_provider_rows)
        return rows

    @app.get("/api/v1/routes", tags=["api"])
    async def api_routes() -> list[dict[str, Any]]:
        """The task route rows."""
        rows: list[dict[str, Any]] = await _read(engine, readiness_store.read_route_rows)
        return rows

    @app.get("/api/v1/revisions", tags=["api"])
    async def api_revisions(limit: int = Query(20, ge=1, le=500)) -> list[dict[str, Any]]:
        """The latest applies, newest first."""
        rows = await _read(engine, lambda conn: store.list_revisions(conn, limit))
        return [_jsonable(row) for row in rows]

    @app.get("/api/v1/jobs", tags=["api"])
    async def api_jobs(limit: int = Query(20, ge=1, le=500)) -> dict[str, Any]:
        """The scoring queue: jobs by task and status, and the latest dead jobs."""

        def read(conn: Any) -> dict[str, Any]:
            counted = queue_store.counts(conn)
            tasks: dict[str, dict[str, int]] = {}
            for (task, status), n in counted.items():
                tasks.setdefault(task, {})[status] = n
            dead = [_jsonable(d) for d in queue_store.dead_jobs(conn, limit)]
            return {"tasks": tasks, "dead": dead}

        result: dict[str, Any] = await _read(engine, read)
        return result


def _ping(engine: Engine) -> tuple[bool, str]:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not ready"; the reason is shown
        return False, str(exc).strip().splitlines()[0][:200] if str(exc) else type(exc).__name__
    return True, "ok"


async def _read(engine: Engine, query: Callable[[Any], Any]) -> Any:
    def run() -> Any:
        with engine.connect() as conn:
            return query(conn)

    return await asyncio.to_thread(run)


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


class QuietServer(uvicorn.Server):
    """uvicorn inside the daemon's loop: the daemon, not uvicorn, handles SIGTERM and SIGINT."""

    def capture_signals(self) -> Any:
        return nullcontext()


def make_server(app: FastAPI, host: str, port: int) -> QuietServer:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=3,
        log_config=None,
    )
    # uvicorn's own messages (say, the port is taken) go out in reconciler's format, so that
    # `--log-format json` gives JSON on every line.
    server_log = logging.getLogger("uvicorn")
    server_log.handlers[:] = logging.getLogger("reconciler").handlers
    server_log.propagate = False
    return QuietServer(config)
