"""`run`: the daemon."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from reconciler import logs
from reconciler.cli.app import app, settings_of
from reconciler.errors import StateError


class DriftMode(StrEnum):
    correct = "correct"
    report = "report"


def parse_http(value: str) -> tuple[str, int] | None:
    """`HOST:PORT`, `:PORT` or `off`."""
    if value.lower() in ("off", "none", ""):
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise StateError(f"--http {value!r}: write HOST:PORT (e.g. 127.0.0.1:8787) or `off`")
    return (host.strip("[]") or "127.0.0.1", int(port))


@app.command()
def run(
    ctx: typer.Context,
    http: Annotated[
        str,
        typer.Option(
            "--http",
            metavar="<host:port>",
            help="Where to serve health, metrics and the status page.",
        ),
    ] = "127.0.0.1:8787",
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            envvar="RECONCILER_ALLOW_HOSTS",
            metavar="<name>",
            help="Also answer requests whose Host is <name> (repeatable or comma-separated; "
            "`*` answers any). localhost, IP addresses and the --http host always are.",
        ),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Reconcile and check readiness once, then exit.")
    ] = False,
    no_scoring: Annotated[
        bool, typer.Option("--no-scoring", help="Do not work the scoring queue.")
    ] = False,
    migrate: Annotated[
        bool, typer.Option("--migrate", help="Upgrade the database schema first (under a lock).")
    ] = False,
    drift: Annotated[
        DriftMode, typer.Option("--drift", help="Correct drift, or only report it.")
    ] = DriftMode.correct,
    resync: Annotated[
        float,
        typer.Option(
            "--resync",
            min=1.0,
            metavar="<seconds>",
            help="Seconds between full resyncs (jittered).",
        ),
    ] = 60.0,
    probe_interval: Annotated[
        float,
        typer.Option(
            "--probe-interval",
            min=1.0,
            metavar="<seconds>",
            help="Seconds between readiness checks.",
        ),
    ] = 30.0,
    poll: Annotated[
        bool, typer.Option("--poll", help="Poll the config directory instead of inotify.")
    ] = False,
) -> int:
    """Watch the config directory and keep the database in step; serve status over HTTP."""
    from reconciler.daemon.app import Daemon, DaemonOptions
    from reconciler.daemon.web import parse_allow_hosts
    from reconciler.service.config import provider_types
    from reconciler.service.database import open_database, safe_url

    settings = settings_of(ctx)
    if settings.verbose == 0:
        logs.configure(settings.log_format, 1)  # a daemon says what it does
    options = DaemonOptions(
        config_dir=settings.config_dir,
        database_label=safe_url(settings.database_url),
        http=parse_http(http),
        allow_hosts=parse_allow_hosts(allow_host or ()),
        once=once,
        migrate=migrate,
        resync_s=resync,
        drift=drift.value,
        probe_interval_s=probe_interval,
        force_polling=True if poll else None,
        scoring=not no_scoring,
    )
    with open_database(settings.database_url) as engine:
        daemon = Daemon(engine, provider_types(), options)
        import asyncio

        return asyncio.run(daemon.run())
