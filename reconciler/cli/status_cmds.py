"""`status`: per-task readiness, from the last stored check or from probing now."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from reconciler import readiness
from reconciler.adapters.plugins import load_registry
from reconciler.cli.app import app, settings_of
from reconciler.cli.console import out
from reconciler.cli.database import open_database
from reconciler.cli.state_cmds import FormatOption, OutputFormat
from reconciler.core.readiness import Status, Verdict, all_required_servable
from reconciler.readiness import verdict_document

EXIT_NOT_READY = 3
_STYLE = {
    Status.ready: "green",
    Status.degraded: "yellow",
    Status.not_ready: "red",
    Status.stale: "magenta",
}


@app.command()
def status(
    ctx: typer.Context,
    probe: Annotated[
        bool, typer.Option("--probe", help="Probe the providers now and store the result.")
    ] = False,
    output: FormatOption = OutputFormat.text,
) -> int:
    """Per-task readiness. Exit 0 when every required task is ready or degraded, else 3."""
    settings = settings_of(ctx)
    registry = load_registry()
    with open_database(settings.database_url) as engine:
        if probe:
            found = readiness.check_now(engine, registry)
        else:
            found = readiness.current(engine, registry)
    now = datetime.now(UTC)
    servable = all_required_servable(found)
    if output is OutputFormat.json:
        document = {
            "format_version": 1,
            "ready": servable,
            "tasks": [verdict_document(v, now) for v in found],
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        print_status(found, now)
    return 0 if servable else EXIT_NOT_READY


def print_status(found: list[Verdict], now: datetime) -> None:
    if not found:
        out.print("No task routes in the database; run `reconciler apply` first.")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("TASK", "STATUS", "PROVIDER/MODEL", "REASON", "CHECKED"):
        table.add_column(column, no_wrap=True)
    for verdict in found:
        task = verdict.task + (" *" if verdict.required else "")
        target = f"{verdict.provider}/{verdict.model}" if verdict.provider else "-"
        if verdict.served_by and verdict.status is Status.degraded:
            target += f" -> {verdict.served_by}"
        table.add_row(
            task,
            Text(verdict.status.value, style=_STYLE[verdict.status]),
            target,
            verdict.reason.value if verdict.reason else "-",
            _age(verdict.checked_at, now),
        )
    out.print(table)
    for verdict in found:
        if verdict.detail or verdict.remedy:
            out.print(f"{verdict.task}: {verdict.detail}")
            if verdict.remedy:
                out.print(f"  fix: {verdict.remedy}")
    ready = sum(v.status in (Status.ready, Status.degraded) for v in found)
    verdict_line = "all servable" if all_required_servable(found) else "NOT all servable"
    out.print(f"{ready} of {len(found)} task(s) servable; required tasks (*): {verdict_line}.")


def _age(checked: datetime | None, now: datetime) -> str:
    if checked is None:
        return "never"
    seconds = int((now - checked).total_seconds())
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"
