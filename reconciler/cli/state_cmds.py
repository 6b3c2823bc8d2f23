"""`plan`, `apply`, `export` and `history`: the commands that read or write the database."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from reconciler import readiness, reconcile
from reconciler.adapters.db import store
from reconciler.adapters.export import export_documents, write_export
from reconciler.adapters.plugins import load_registry
from reconciler.cli.app import app, settings_of
from reconciler.cli.console import err, out
from reconciler.cli.database import open_database
from reconciler.core.config import ConfigLoader, DesiredState
from reconciler.core.plan_doc import plan_document, plan_from_document
from reconciler.errors import ConfigInvalid, StateError
from reconciler.render import plan_text, problems_text
from reconciler.settings import Settings


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


FormatOption = Annotated[OutputFormat, typer.Option("--format", help="Output format.")]


def _desired(settings: Settings) -> DesiredState:
    try:
        return reconcile.load_config([settings.config_dir], ConfigLoader(load_registry()))
    except ConfigInvalid as exc:
        err.print(problems_text(exc.problems))
        raise StateError(
            f"{len(exc.problems)} problem(s) in the config files; nothing was planned or written"
        ) from None


@app.command()
def plan(
    ctx: typer.Context,
    output: FormatOption = OutputFormat.text,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Save the plan for `apply FILE`.")
    ] = None,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="Exit 0 no changes, 2 changes, 1 error.")
    ] = False,
    probe: Annotated[
        bool, typer.Option("--probe", help="Warn about routes nothing could serve after apply.")
    ] = False,
) -> int:
    """Show what apply would change in the database."""
    settings = settings_of(ctx)
    state = _desired(settings)
    with open_database(settings.database_url) as engine:
        the_plan = reconcile.plan(engine, state)
    if probe:
        _warn_unservable(state)
    document = plan_document(the_plan)
    if output is OutputFormat.json:
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    else:
        out.print(plan_text(the_plan, reconcile.summary_line(the_plan)))
    if out_file is not None:
        _write_plan_file(out_file, document)
        if output is OutputFormat.text:
            out.print(f"Saved the plan to {out_file}; apply it with `reconciler apply {out_file}`.")
    if the_plan.refusals:
        return 1
    return 2 if detailed_exitcode and the_plan.has_changes else 0


def _warn_unservable(state: DesiredState) -> None:
    """Probe the providers the files declare; warn about routes that would not be servable."""
    for verdict in readiness.unservable(readiness.check_files(state)):
        err.print(
            f"warning: after this apply, task {verdict.task} could not be served: "
            f"{verdict.reason.value if verdict.reason else 'unknown'}: {verdict.detail}"
        )
        if verdict.remedy:
            err.print(f"  fix: {verdict.remedy}")


def _write_plan_file(path: Path, document: dict[str, Any]) -> None:
    try:
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", "utf-8")
    except OSError as exc:
        raise StateError(f"cannot write the plan to {path}: {exc.strerror}") from None


def _read_plan_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise StateError(f"cannot read the plan {path}: {exc.strerror}") from None
    except ValueError:
        raise StateError(f"{path} is not a saved plan (not JSON)") from None


@app.command()
def apply(
    ctx: typer.Context,
    plan_file: Annotated[
        Path | None, typer.Argument(help="A plan saved by `plan --out`; default: plan now.")
    ] = None,
    allow_mass_delete: Annotated[
        bool, typer.Option("--allow-mass-delete", help="Allow deleting most managed rows.")
    ] = False,
    lock_timeout: Annotated[
        float,
        typer.Option("--lock-timeout", min=0, max=86400, help="Seconds to wait for the lock."),
    ] = 30.0,
    output: FormatOption = OutputFormat.text,
) -> int:
    """Apply the files (or a saved plan) to the database, in one locked transaction."""
    settings = settings_of(ctx)
    saved = plan_from_document(_read_plan_file(plan_file)) if plan_file else None
    state = None if saved else _desired(settings)
    with open_database(settings.database_url) as engine:
        result = reconcile.apply(
            engine,
            state,
            saved=saved,
            allow_mass_delete=allow_mass_delete,
            lock_timeout=lock_timeout,
            config_dir=settings.config_dir,
            registry=load_registry(),
        )
    if output is OutputFormat.json:
        document = {
            **plan_document(result.plan),
            "applied": result.applied,
            "generation": result.generation,
        }
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        return 0
    out.print(plan_text(result.plan, reconcile.summary_line(result.plan)))
    if result.applied:
        out.print(f"Apply complete: generation {result.generation}.")
    else:
        out.print(f"Nothing to apply; nothing was written (generation {result.generation}).")
    return 0


@app.command()
def export(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write.")] = Path("exported"),
) -> int:
    """Write the database's providers and routes as config files."""
    settings = settings_of(ctx)
    with open_database(settings.database_url) as engine:
        reconcile.require_schema(engine)
        with engine.connect() as conn:
            observed = store.read_observed(conn)
    files = export_documents(observed, load_registry())
    try:
        written = write_export(out_dir, files)
    except OSError as exc:
        raise StateError(f"cannot write to {out_dir}: {exc.strerror}") from None
    for path in written:
        out.print(f"wrote {path}")
    if not written:
        out.print("the database holds no providers or routes; nothing written")
    return 0


@app.command()
def history(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many revisions.")] = 20,
    output: FormatOption = OutputFormat.text,
) -> int:
    """List the applies that changed something, newest first."""
    settings = settings_of(ctx)
    with open_database(settings.database_url) as engine:
        reconcile.require_schema(engine)
        with engine.connect() as conn:
            rows = store.list_revisions(conn, limit)
    if output is OutputFormat.json:
        for row in rows:
            row["applied_at"] = _as_utc(row["applied_at"]).isoformat()
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return 0
    if not rows:
        out.print("no revisions yet")
    for row in rows:
        commit = (row["git_commit"] or "-")[:12]
        out.print(
            f"generation {row['generation']}  {_utc(row['applied_at'])}  "
            f"{row['user'] or '?'}@{row['host']} pid {row['pid']}  commit {commit}  "
            f"digest {(row['config_digest'] or '-')[:12]}  {row['summary']}"
        )
    return 0


def _as_utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; reconciler always writes UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _utc(moment: datetime) -> str:
    return f"{_as_utc(moment):%Y-%m-%d %H:%M:%S} UTC"
