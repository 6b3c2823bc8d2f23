"""`reconciler db ...`: schema migrations."""

from __future__ import annotations

from typing import Annotated

import typer

from reconciler.cli.app import app, settings_of
from reconciler.cli.console import out

db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> int:
    """Migrate the database schema up (default: to the newest revision)."""
    from reconciler.service import migrations
    from reconciler.service.database import open_database, safe_url

    url = settings_of(ctx).database_url
    with open_database(url) as engine:
        before, after = migrations.upgrade(engine, revision)
    if before == after:
        out.print(f"{safe_url(url)}: schema already at {after}")
    else:
        out.print(f"{safe_url(url)}: schema upgraded {before or '(empty)'} -> {after}")
    return 0


@db_app.command("downgrade")
def db_downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision, or 'base' for none.")],
    yes: Annotated[
        bool, typer.Option("--yes", help="Drop tables and columns that hold data.")
    ] = False,
) -> int:
    """Migrate the database schema down to REVISION, saying first what it drops.

    A downgrade that drops data, or the whole schema ('base'), is refused without --yes.
    Tables that were there before reconciler's first migration are never dropped.
    """
    from reconciler.service import migrations
    from reconciler.service.database import open_database, safe_url

    url = settings_of(ctx).database_url
    with open_database(url) as engine:
        plan = migrations.plan_downgrade(engine, revision)
        if not plan.steps:
            out.print(f"{safe_url(url)}: schema already at {plan.current or '(empty)'}")
            return 0
        if not yes:
            plan.raise_if_unsafe()
        out.print(f"{safe_url(url)}: downgrading {plan.span} {plan.describe('drops')}")
        done = migrations.downgrade(engine, revision, allow_loss=yes)
    out.print(f"{safe_url(url)}: schema downgraded {done.span}; {done.describe('dropped')}")
    return 0


@db_app.command("current")
def db_current(ctx: typer.Context) -> int:
    """Print the database's schema revision and whether it is the newest."""
    from reconciler.service import migrations
    from reconciler.service.database import open_database

    with open_database(settings_of(ctx).database_url) as engine:
        current, head = migrations.revisions(engine)
    state = "up to date" if current == head else f"newest is {head}"
    out.print(f"{current or '(empty)'} ({state})")
    return 0


@db_app.command("history")
def db_history() -> int:
    """List the schema revisions, newest first."""
    from reconciler.service import migrations

    for revision, down, message in migrations.history():
        out.print(f"{down or '<base>'} -> {revision}: {message}")
    return 0


@db_app.command("check")
def db_check(ctx: typer.Context) -> int:
    """Check that the database is at the newest revision and matches the models."""
    from reconciler.service import migrations
    from reconciler.service.database import open_database

    with open_database(settings_of(ctx).database_url) as engine:
        migrations.check(engine)
    out.print("schema is current and matches the models")
    return 0
