"""`status`: per-task readiness, from the last stored check or from probing now."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from reconciler.cli.app import app, settings_of
from reconciler.cli.console import out
from reconciler.cli.state_cmds import FormatOption, OutputFormat

if TYPE_CHECKING:
    from reconciler.core.readiness import Verdict

EXIT_NOT_READY = 3
_STYLE = {"ready": "green", "degraded": "yellow", "not_ready": "red", "stale": "magenta"}


@app.command()
def status(
    ctx: typer.Context,
    probe: Annotated[
        bool, typer.Option("--probe", help="Probe the providers now and store the result.")
    ] = False,
    output: FormatOption = OutputFormat.text,
) -> int:
    """Per-task readiness. Exit 0 when every required task is ready or degraded, else 3."""
    from reconciler.core.readiness import all_required_servable
    from reconciler.service import readiness
    from reconciler.service.config import provider_types
    from reconciler.service.database import open_database

    settings = settings_of(ctx)
    registry = provider_types()
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
            "tasks": [readiness.verdict_document(v, now) for v in found],
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        print_status(found, now)
    return 0 if servable else EXIT_NOT_READY


def print_status(found: list[Verdict], now: datetime) -> None:
    from rich.text import Text

    from reconciler.core.readiness import SERVABLE, Status, all_required_servable

    if not found:
        out.print("No task routes in the database; run `reconciler apply` first.")
        return
    rows = [("TASK", "STATUS", "PROVIDER/MODEL", "REASON", "CHECKED")]
    for verdict in found:
        target = f"{verdict.provider}/{verdict.model}" if verdict.provider else "-"
        if verdict.served_by and verdict.status is Status.degraded:
            target += f" -> {verdict.served_by}"
        rows.append(
            (
                verdict.task + (" *" if verdict.required else ""),
                verdict.status.value,
                target,
                verdict.reason.value if verdict.reason else "-",
                _age(verdict.checked_at, now),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        line = Text("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            line.stylize("bold")
        else:
            start = widths[0] + 2
            line.stylize(_STYLE[found[index - 1].status.value], start, start + len(row[1]))
        out.print(line)
    for verdict in found:
        if verdict.detail or verdict.remedy:
            out.print(f"{verdict.task}: {verdict.detail}")
            if verdict.remedy:
                out.print(f"  fix: {verdict.remedy}")
    ready = sum(v.status in SERVABLE for v in found)
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
