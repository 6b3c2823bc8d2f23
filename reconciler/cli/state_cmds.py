"""`plan`, `apply`, `show`, `export` and `history`: the commands about the database's state."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reconciler.cli import plans
from reconciler.cli.app import app, settings_of
from reconciler.cli.console import err, out, print_lines
from reconciler.cli.plans import print_json, refuse, show_plan
from reconciler.core.text import escape_control
from reconciler.errors import ConfigInvalid, StalePlan, StateError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from reconciler.core.config import DesiredState
    from reconciler.core.plan import Plan
    from reconciler.service.reconcile import ApplyResult
    from reconciler.settings import Settings

MAX_HISTORY = 10_000


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


FormatOption = Annotated[OutputFormat, typer.Option("--format", help="Output format.")]


def _desired(settings: Settings) -> DesiredState:
    from reconciler.problem_report import problems_text
    from reconciler.service import config

    try:
        return config.desired(settings.config_dir)
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
    """Show what apply would change in the database, and every refusal it would make.

    Exit 1 when apply would refuse the plan.
    """
    from reconciler.core.plan_doc import plan_document
    from reconciler.service import reconcile
    from reconciler.service.database import open_database

    settings = settings_of(ctx)
    state = _desired(settings)
    # Only a plan shown as text may come from the database's record: the others carry the
    # digest of the rows, which the record spares reading.
    by_record = output is OutputFormat.text and out_file is None
    with open_database(settings.database_url) as engine:
        the_plan = reconcile.plan(engine, state, by_record=by_record)
    if probe:
        _warn_unservable(state)
    if output is OutputFormat.json:
        print_json(plan_document(the_plan))
    else:
        show_plan(the_plan)
    if out_file is not None:
        plans.write_plan_file(out_file, plan_document(the_plan))
        if output is OutputFormat.text:
            out.print(plans.saved_note(out_file, the_plan))
    if the_plan.refusals:
        return 1
    return 2 if detailed_exitcode and the_plan.has_changes else 0


def _warn_unservable(state: DesiredState) -> None:
    """Probe the providers the files declare; warn about routes that would not be servable."""
    from reconciler.service import readiness

    for verdict in readiness.unservable(readiness.check_files(state)):
        err.print(
            f"warning: after this apply, task {verdict.task} could not be served: "
            f"{verdict.reason.value if verdict.reason else 'unknown'}: {verdict.detail}"
        )
        if verdict.remedy:
            err.print(f"  fix: {verdict.remedy}")


@app.command()
def apply(
    ctx: typer.Context,
    plan_file: Annotated[
        Path | None, typer.Argument(help="A plan saved by `plan --out`; default: plan now.")
    ] = None,
    allow_mass_delete: Annotated[
        bool, typer.Option("--allow-mass-delete", help="Allow deleting most managed rows.")
    ] = False,
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="Do not ask for `yes` on a terminal.")
    ] = False,
    lock_timeout: Annotated[
        float,
        typer.Option(
            "--lock-timeout",
            min=0,
            max=86400,
            metavar="<seconds>",
            help="Seconds to wait for the lock.",
        ),
    ] = 30.0,
    output: FormatOption = OutputFormat.text,
) -> int:
    """Apply the files (or a saved plan) to the database, in one locked transaction.

    On a terminal, show the plan and apply it only after `yes` (unless --auto-approve).
    """
    from reconciler.service import reconcile
    from reconciler.service.config import provider_types
    from reconciler.service.database import open_database

    settings = settings_of(ctx)
    registry = provider_types()
    saved = plans.read_saved_plan(plan_file, registry) if plan_file else None
    state = None if saved else _desired(settings)
    ask = saved is None and not auto_approve and plans.interactive()
    if ask and output is OutputFormat.json:
        raise StateError(
            "apply --format json does not ask for `yes`; add --auto-approve, or apply a plan "
            "saved by `reconciler plan --out FILE`"
        )
    with open_database(settings.database_url) as engine:
        if plan_file is not None and saved is not None:
            plans.check_references(engine, plan_file, saved)
        if ask:
            assert state is not None
            saved = _approved(engine, state, allow_mass_delete)
            if saved is None:
                err.print("Apply cancelled.")
                return 1
        with _stale_once_shown(ask):
            result = reconcile.apply(
                engine,
                state,
                saved=saved,
                allow_mass_delete=allow_mass_delete,
                lock_timeout=lock_timeout,
                config_dir=settings.config_dir,
                registry=registry,
                by_record=output is OutputFormat.text,  # JSON shows the rows' digest
            )
    return _applied(result, output, shown=ask)


@contextmanager
def _stale_once_shown(shown: bool) -> Iterator[None]:
    """A plan shown before asking is applied as a saved plan: stale when the database moved."""
    try:
        yield
    except StalePlan:
        if not shown:
            raise
        raise StalePlan(
            "the database changed after the plan was shown; nothing was applied. "
            "Run `reconciler apply` again to see the new plan"
        ) from None


def _approved(engine: Engine, state: DesiredState, allow_mass_delete: bool) -> Plan | None:
    """Show the plan and ask for `yes`: the plan to apply, or None when the answer is no.

    A plan with no changes, or one that apply refuses (it says why), is not asked about.
    """
    from reconciler.service import reconcile

    shown = reconcile.plan(engine, state, allow_mass_delete=allow_mass_delete)
    show_plan(shown)
    if shown.has_changes and not shown.refusals and not plans.confirmed():
        return None
    return shown


def _applied(result: ApplyResult, output: OutputFormat, shown: bool) -> int:
    """Print what apply did (the plan too, unless it was shown before asking)."""
    from reconciler.core.plan_doc import plan_document

    if output is OutputFormat.json:
        document = {
            **plan_document(result.plan),
            "applied": result.applied,
            "generation": result.generation,
        }
        print_json(document)
        return 0
    if not shown:
        show_plan(result.plan)
    if result.applied:
        print_lines([(f"Apply complete: generation {result.generation}.", "done")])
    else:
        out.print(f"Nothing to apply; nothing was written (generation {result.generation}).")
    return 0


@app.command()
def show(
    plan_file: Annotated[Path, typer.Argument(help="A plan saved by `plan --out`.")],
    output: FormatOption = OutputFormat.text,
) -> int:
    """Print a saved plan as `plan` printed it, checked as `apply` checks it; no database needed."""
    from reconciler.core.plan_doc import plan_document
    from reconciler.service.config import provider_types

    saved = plans.read_saved_plan(plan_file, provider_types(), "apply would refuse it")
    if output is OutputFormat.json:
        print_json(plan_document(saved))
    else:
        show_plan(saved)
    return 0


@app.command()
def export(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write.")] = Path("exported"),
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite files that already exist.")
    ] = False,
) -> int:
    """Write the database's providers and routes as config files.

    A file that exists already is overwritten only with --force.
    """
    from reconciler.service import state
    from reconciler.service.database import open_database

    settings = settings_of(ctx)
    with open_database(settings.database_url) as engine:
        files, problems = state.export(engine)
    refuse(problems, "nothing was exported: fix or remove these rows, then export again")
    if not force and (found := state.existing(out_dir, files)):
        names = ", ".join(escape_control(str(path)) for path in found)
        raise StateError(
            f"{names} already exist{'s' if len(found) == 1 else ''}; nothing was exported: "
            "pass --force to overwrite, or choose another --out directory"
        )
    try:
        written = state.write_export(out_dir, files, overwrite=force)
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
            "--limit",
            callback=_history_limit,
            metavar="<count>",
            help=f"How many revisions, 1 to {MAX_HISTORY}.",
        ),
    ] = 20,
    output: FormatOption = OutputFormat.text,
) -> int:
    """List the applies that changed something, newest first."""
    from reconciler.service import reconcile, state
    from reconciler.service.database import open_database

    settings = settings_of(ctx)
    with open_database(settings.database_url) as engine:
        rows = state.revisions(engine, limit)
    if output is OutputFormat.json:
        documents = [_revision_document(row) for row in rows]
        sys.stdout.write(json.dumps(documents, indent=2, default=str) + "\n")
        return 0
    if not rows:
        out.print("no revisions yet")
    for row in rows:
        sha, dirty = reconcile.split_commit(row["git_commit"])
        commit = (sha or "-")[:12] + ("-dirty" if dirty else "")
        out.print(
            f"generation {row['generation']}  {_utc(row['applied_at'])}  "
            f"{row['user'] or '?'}@{row['host']} pid {row['pid']}  commit {commit}  "
            f"digest {(row['config_digest'] or '-')[:12]}  {row['summary']}"
        )
    return 0


def _revision_document(row: dict[str, Any]) -> dict[str, Any]:
    """A revision for `history --format json`: `git_commit` and, after it, whether the config
    directory had changes not committed (`dirty`; null without a commit)."""
    from reconciler.service.reconcile import split_commit

    document: dict[str, Any] = {}
    for key, value in row.items():
        document[key] = value
        if key == "git_commit":
            document["git_commit"], document["dirty"] = split_commit(value)
    document["applied_at"] = _as_utc(row["applied_at"]).isoformat()
    return document


def _as_utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; reconciler always writes UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _utc(moment: datetime) -> str:
    return f"{_as_utc(moment):%Y-%m-%d %H:%M:%S} UTC"
