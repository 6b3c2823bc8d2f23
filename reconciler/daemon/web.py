"""The daemon's HTTP endpoints: health, readiness, metrics, a read-only API and a status page.

Handlers only read: the daemon's in-memory state, and the database through short read-only
queries run in a worker thread. Nothing here ever writes.

Who gets an answer: every request, `/healthz` included, passes a Host allow-list first. A web page
whose name its owner re-points at this machine (DNS rebinding) sends its own name as Host and gets
421, so no browser tab can read the API. Allowed by default: `localhost`, any IP address (a Host
that is an address cannot come from a rebound name; Kubernetes probes and Prometheus use the pod
IP) and the name the server is bound to; `--allow-host NAME` adds names, `*` allows any. Every
page is served from here: `/docs` is a plain list of the endpoints, with no script and nothing
fetched from another host.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import re
import socket
import time
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, text
from starlette.types import ASGIApp, Receive, Scope, Send

from reconciler import __version__
from reconciler.core.readiness import all_required_servable
from reconciler.core.text import untrusted
from reconciler.daemon import api_results, legacy, providers_view
from reconciler.daemon.metrics import Metrics
from reconciler.daemon.page import api_page, status_page
from reconciler.daemon.responses import jsonable, page
from reconciler.daemon.state import DaemonState
from reconciler.errors import StateError
from reconciler.service import queue
from reconciler.service import state as stored
from reconciler.service.catalog import shown_provider_row
from reconciler.service.readiness import verdict_document
from reconciler.service.redaction import redact_tree

HEARTBEAT_STALE_S = 10.0
ANY_HOST = "*"
MISDIRECTED = 421
LISTEN_BACKLOG = 128
_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")


def host_name(value: str) -> str | None:
    """The host of a Host header or an allow-list entry, lower-cased, without port or final dot.

    `[::1]:8787` gives `[::1]`; None when the value is no host.
    """
    text = value.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        name, rest = (text[: end + 1], text[end + 1 :]) if end > 0 else ("", "")
    else:
        name, sep, port = text.partition(":")
        name, rest = name.removesuffix("."), sep + port
    if rest and not (rest.startswith(":") and rest[1:].isdigit()):
        return None
    return name if _is_ip(name) or _NAME.fullmatch(name) else None


def _is_ip(name: str) -> bool:
    """An IPv4 address, or a bracketed IPv6 one, as a Host header writes them."""
    try:
        if name.startswith("[") and name.endswith("]"):
            ipaddress.IPv6Address(name[1:-1])
        else:
            ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    """True when binding `host` keeps the server to this machine."""
    if host.lower().removesuffix(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_allow_hosts(values: Iterable[str]) -> tuple[str, ...]:
    """`--allow-host` values (each may hold several, comma-separated) as host names, or `*`."""
    names: list[str] = []
    for value in values:
        for entry in filter(None, (e.strip() for e in value.split(","))):
            name = ANY_HOST if entry == ANY_HOST else host_name(entry)
            if name is None:
                raise StateError(
                    f"--allow-host {entry!r}: write a host name as a browser sends it "
                    "(status.example.com), an IP address, or * to answer any Host"
                )
            names.append(name)
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class HostPolicy:
    """Which Host headers get an answer. Purely computational, no side-effects."""

    names: frozenset[str]
    any_host: bool = False

    def allows(self, header: str) -> bool:
        if self.any_host:
            return True
        name = host_name(header)
        return name is not None and (name in self.names or _is_ip(name))

    def describe(self) -> str:
        if self.any_host:
            return "any (--allow-host *)"
        return ", ".join([*sorted(self.names), "any IP address"])


def host_policy(bind_host: str, allowed: Iterable[str]) -> HostPolicy:
    """`localhost`, any IP address, the name bound to, and the `--allow-host` names."""
    names = {"localhost", *allowed}
    bound = host_name(bind_host)
    if bound is not None and not _is_ip(bound):
        names.add(bound)
    return HostPolicy(frozenset(names - {ANY_HOST}), any_host=ANY_HOST in names)


class HostAllowList:
    """ASGI middleware: a request whose Host is not on the allow-list gets 421 and a way out."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            hosts = [v.decode("latin-1") for k, v in scope["headers"] if k == b"host"]
            # No Host at all (HTTP/1.0) cannot come from a browser; two are never honest.
            if len(hosts) > 1 or (hosts and not self.policy.allows(hosts[0])):
                await _misdirected(hosts)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _misdirected(hosts: list[str]) -> JSONResponse:
    shown = untrusted(", ".join(hosts), limit=100)
    body = {
        "error": "host_not_allowed",
        "host": shown,
        "detail": "this server answers only the Host names on its allow-list; to allow this "
        "one, start it with --allow-host NAME (or RECONCILER_ALLOW_HOSTS=NAME,...)",
    }
    return JSONResponse(body, status_code=MISDIRECTED)


def create_app(engine: Engine, state: DaemonState, metrics: Metrics, hosts: HostPolicy) -> FastAPI:
    app = FastAPI(
        title="reconciler",
        summary="LLM provider settings and task routes as code: the daemon's read-only API.",
        version="1",
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.add_middleware(HostAllowList, policy=hosts)

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
        return JSONResponse(redact_tree(body), status_code=200 if not reasons else 503)

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
    app.include_router(api_results.router(engine))
    app.include_router(legacy.router(engine, state))
    app.include_router(providers_view.router(engine, state))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def status() -> HTMLResponse:
        return page(status_page(state, datetime.now(UTC)))

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return page(api_page(app.openapi()))

    return app


def _add_api(app: FastAPI, engine: Engine, state: DaemonState) -> None:
    """The read-only `/api/v1` endpoints."""

    @app.get("/api/v1/status", tags=["api"])
    async def api_status() -> dict[str, Any]:
        """The daemon: its version, leader or not, last apply, current error, drift."""
        summary: dict[str, Any] = redact_tree({"version": __version__, **state.summary()})
        return summary

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
        rows = await asyncio.to_thread(stored.provider_rows, engine)
        return [shown_provider_row(row) for row in rows]

    @app.get("/api/v1/routes", tags=["api"])
    async def api_routes() -> list[dict[str, Any]]:
        """The task route rows."""
        return await asyncio.to_thread(stored.route_rows, engine)

    @app.get("/api/v1/revisions", tags=["api"])
    async def api_revisions(limit: int = Query(20, ge=1, le=500)) -> list[dict[str, Any]]:
        """The latest applies, newest first."""
        rows = await asyncio.to_thread(stored.revisions, engine, limit, check_schema=False)
        return [jsonable(row) for row in rows]

    @app.get("/api/v1/jobs", tags=["api"])
    async def api_jobs(limit: int = Query(20, ge=1, le=500)) -> dict[str, Any]:
        """The scoring queue: jobs by task and status, and the latest dead jobs."""
        counted, dead = await asyncio.to_thread(queue.summary, engine, limit, check_schema=False)
        return {"tasks": queue.by_task(counted), "dead": [jsonable(d) for d in dead]}


def _ping(engine: Engine) -> tuple[bool, str]:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not ready"; the reason is shown
        return False, str(exc).strip().splitlines()[0][:200] if str(exc) else type(exc).__name__
    return True, "ok"


class QuietServer(uvicorn.Server):
    """uvicorn inside the daemon's loop: the daemon, not uvicorn, handles SIGTERM and SIGINT."""

    def capture_signals(self) -> Any:
        return nullcontext()


def shown_address(host: str, port: int) -> str:
    """`host:port` as a URL writes it: `[::1]:8787`."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def exposure_warning(host: str, port: int, hosts: HostPolicy) -> str | None:
    """The warning for a bind beyond loopback, in one line; None for a loopback bind."""
    if is_loopback(host):
        return None
    return (
        f"HTTP on {shown_address(host, port)} is not loopback: the API and the status page are "
        f"reachable from other hosts; Host allow-list: {hosts.describe()} "
        "(add names with --allow-host NAME)"
    )


def bind_sockets(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address of `host`, as asyncio would bind them.

    Bound before the daemon starts anything; a StateError says, in one line, why they cannot be.
    """
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise StateError(_bind_failure(host, port, exc)) from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(found):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise StateError(_bind_failure(host, port, exc)) from None
    return sockets


def _bind_failure(host: str, port: int, exc: OSError) -> str:
    other = f"--http {shown_address(host, 0).removesuffix(':0')}:PORT"
    local = "bind an address of this machine, e.g. --http 127.0.0.1:PORT"
    if isinstance(exc, socket.gaierror):
        reason, fix = f"{host!r} is not a name this machine can resolve", local
    elif exc.errno == errno.EADDRINUSE:
        reason, fix = "address already in use", f"choose a free port with {other}"
    elif exc.errno == errno.EACCES:
        reason, fix = "permission denied", f"choose a port above 1023 with {other}"
    elif exc.errno == errno.EADDRNOTAVAIL:
        reason, fix = f"{host} is not an address of this machine", local
    else:
        reason = exc.strerror or type(exc).__name__
        fix = f"choose another address or port with {other}"
    return f"cannot serve HTTP on {shown_address(host, port)}: {reason}; {fix} (or --http off)"


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
