"""`plan`, `apply`, `export` and `history`: the commands that read or write the database."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reconciler.cli.app import app, settings_of
from reconciler.cli.console import err, out
from reconciler.core import jsonsafe
from reconciler.core.text import escape_control
from reconciler.errors import ConfigInvalid, StateError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from reconciler.core.config import DesiredState
    from reconciler.core.plan import Plan
    from reconciler.core.registry import ProviderRegistry
    from reconciler.settings import Settings

MAX_HISTORY = 10_000


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


FormatOption = Annotated[OutputFormat, typer.Option("--format", help="Output format.")]


def _refuse(problems: list[str], outcome: str, where: str = "") -> None:
    """Raise when there are problems: one line each, then (for several) a count of them."""
    lines = [f"{where}: {p}" if where else p for p in problems]
    if len(lines) == 1:
        raise StateError(escape_control(f"{lines[0]}; {outcome}"))
    if lines:
        for line in lines:
            err.print(escape_control(line))
        place = f" in {where}" if where else ""
        raise StateError(escape_control(f"{len(lines)} problems{place}; {outcome}"))


def _show_plan(the_plan: Plan) -> None:
    """The plan as text, every control character a file or a row could carry escaped."""
    from reconciler import reconcile
    from reconciler.render import plan_text

    text = plan_text(the_plan, reconcile.summary_line(the_plan))
    out.print("\n".join(escape_control(line) for line in text.split("\n")))


def _desired(settings: Settings) -> DesiredState:
    from reconciler import reconcile
    from reconciler.adapters.plugins import load_registry
    from reconciler.core.config import ConfigLoader
    from reconciler.render import problems_text

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
    from reconciler import reconcile
    from reconciler.cli.database import open_database
    from reconciler.core.plan_doc import plan_document

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
        _show_plan(the_plan)
    if out_file is not None:
        _write_plan_file(out_file, document)
        if output is OutputFormat.text:
            out.print(f"Saved the plan to {out_file}; apply it with `reconciler apply {out_file}`.")
    if the_plan.refusals:
        return 1
    return 2 if detailed_exitcode and the_plan.has_changes else 0


def _warn_unservable(state: DesiredState) -> None:
    """Probe the providers the files declare; warn about routes that would not be servable."""
    from reconciler import readiness

    for verdict in readiness.unservable(readiness.check_files(state)):
        err.print(
            f"warning: after this apply, task {verdict.task} could not be served: "
            f"{verdict.reason.value if verdict.reason else 'unknown'}: {verdict.detail}"
        )
        if verdict.remedy:
            err.print(f"  fix: {verdict.remedy}")


def _write_plan_file(path: Path, document: dict[str, Any]) -> None:
    """Save the plan, refused when `apply FILE` could not read it back (a NaN or a huge number
    held by a row or the files)."""
    shown = escape_control(str(path))
    text = json.dumps(document, indent=2, ensure_ascii=False)
    try:
        jsonsafe.loads(text)
    except jsonsafe.JsonRejected as exc:
        raise StateError(
            f"the plan was not saved to {shown}: it is not plain JSON ({exc}), so apply could "
            "not read it back; change that value in the files or the database"
        ) from None
    try:
        path.write_text(text + "\n", "utf-8")
    except OSError as exc:
        raise StateError(f"cannot write the plan to {shown}: {exc.strerror}") from None


def _read_saved_plan(path: Path, registry: ProviderRegistry) -> Plan:
    """The saved plan in `path`, refused unless every row it writes is a valid declaration."""
    from reconciler.core.plan_doc import AGAIN, content_problems, plan_from_document

    shown = escape_control(str(path))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StateError(f"cannot read the plan {shown}: {exc.strerror}") from None
    try:
        document = jsonsafe.loads(data)
    except jsonsafe.JsonRejected as exc:
        raise StateError(f"{shown} is not a saved plan: {exc}; {AGAIN}") from None
    try:
        saved = plan_from_document(document)
    except StateError as exc:
        raise StateError(escape_control(f"{shown}: {exc}")) from None
    _refuse(content_problems(saved, registry), f"nothing was applied; {AGAIN}", shown)
    return saved


def _check_references(engine: Engine, path: Path, saved: Plan) -> None:
    """Routes the saved plan writes must name providers that exist once it is applied.

    Checked against the state the plan was made for; on any other state apply refuses the
    plan as stale, inside its lock.
    """
    from reconciler import reconcile
    from reconciler.adapters.db import store
    from reconciler.core.plan import state_digest
    from reconciler.core.plan_doc import AGAIN, reference_problems

    reconcile.require_schema(engine)
    with engine.connect() as conn:
        observed = store.read_observed(conn)
    if state_digest(observed) == saved.base_digest:
        problems = reference_problems(saved, observed)
        _refuse(problems, f"nothing was applied; {AGAIN}", escape_control(str(path)))


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
    from reconciler import reconcile
    from reconciler.adapters.plugins import load_registry
    from reconciler.cli.database import open_database
    from reconciler.core.plan_doc import plan_document

    settings = settings_of(ctx)
    registry = load_registry()
    saved = _read_saved_plan(plan_file, registry) if plan_file else None
    state = None if saved else _desired(settings)
    with open_database(settings.database_url) as engine:
        if plan_file is not None and saved is not None:
            _check_references(engine, plan_file, saved)
        result = reconcile.apply(
            engine,
            state,
            saved=saved,
            allow_mass_delete=allow_mass_delete,
            lock_timeout=lock_timeout,
            config_dir=settings.config_dir,
            registry=registry,
        )
    if output is OutputFormat.json:
        document = {
            **plan_document(result.plan),
            "applied": result.applied,
            "generation": result.generation,
        }
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        return 0
    _show_plan(result.plan)
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
    from reconciler import reconcile
    from reconciler.adapters.db import store
    from reconciler.adapters.export import export_files, write_export
    from reconciler.adapters.plugins import load_registry
    from reconciler.cli.database import open_database

    settings = settings_of(ctx)
    with open_database(settings.database_url) as engine:
        reconcile.require_schema(engine)
        with engine.connect() as conn:
            observed = store.read_observed(conn)
    files, problems = export_files(observed, load_registry())
    _refuse(problems, "nothing was exported: fix or remove these rows, then export again")
    try:
        written = write_export(out_dir, files)
    except OSError as exc:
        shown = escape_control(str(out_dir))
        raise StateError(f"cannot write to {shown}: {exc.strerror}") from None
    for path in written:
        out.print(escape_control(f"wrote {path}"))
    if not written:
        out.print("the database holds no providers or routes; nothing written")
    return 0


def _history_limit(value: int) -> int:
    if not 1 <= value <= MAX_HISTORY:
        raise typer.BadParameter(f"give a number of revisions from 1 to {MAX_HISTORY}")
    return value


@app.command()
def history(
    ctx: typer.Context,
    limit: Annotated[
        int,
        typer.Option(
            "--limit", callback=_history_limit, help=f"How many revisions, 1 to {MAX_HISTORY}."
        ),
    ] = 20,
    output: FormatOption = OutputFormat.text,
) -> int:
    """List the applies that changed something, newest first."""
    from reconciler import reconcile
    from reconciler.adapters.db import store
    from reconciler.cli.database import open_database

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
