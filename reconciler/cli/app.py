"""The Typer application and its global options.

No `from __future__ import annotations` here: typer reads the signatures at every start, and
string annotations would be compiled each time.
"""

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperArgument

from reconciler import __version__, logs
from reconciler.logs import LogFormat

if TYPE_CHECKING:
    from reconciler.settings import Settings

_typer_label = TyperArgument.display_type_rich


def _argument_label(self: TyperArgument, ctx: Any) -> str | None:
    """An argument's type in `--help`: `paths... <path>`, not typer's `<list[Path]>`.

    Help text only: parsing, usage lines and error messages are typer's own.
    """
    label = _typer_label(self, ctx)
    found = re.fullmatch(r"<list\[(\w+)\]>", label or "")
    return f"<{found[1].lower()}>" if found else label


TyperArgument.display_type_rich = _argument_label  # type: ignore[method-assign, assignment]

app = typer.Typer(
    name="reconciler",
    help="LLM provider settings and task routes as code: validate, plan and apply YAML.",
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Context:
    """What the root callback hands to the commands."""

    __slots__ = ("settings",)

    def __init__(self, settings: "Settings") -> None:
        self.settings = settings


def _print_version(given: bool) -> None:
    if given:
        typer.echo(f"reconciler {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            metavar="<url>",
            help="Database URL [env RECONCILER_DATABASE_URL].",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", metavar="<dir>", help="Config directory [env RECONCILER_CONFIG_DIR]."
        ),
    ] = None,
    verbose: Annotated[
        int,
        typer.Option(
            "-v", "--verbose", count=True, show_default=False, help="More logs; repeat for more."
        ),
    ] = 0,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    log_format: Annotated[
        LogFormat | None,
        typer.Option("--log-format", help="Log format [env RECONCILER_LOG_FORMAT]."),
    ] = None,
) -> None:
    """Global options; settings come from a flag, else RECONCILER_*, else the default."""
    from reconciler.settings import Settings

    given: dict[str, Any] = {
        "database_url": database_url,
        "config_dir": config,
        "log_format": log_format,
        "verbose": verbose or None,
    }
    settings = Settings.load(given)
    logs.configure(settings.log_format, settings.verbose)
    ctx.obj = Context(settings=settings)


def settings_of(ctx: typer.Context) -> "Settings":
    context = ctx.find_object(Context)
    assert context is not None, "the root callback always sets the context"
    return context.settings
