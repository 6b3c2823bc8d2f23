"""`enqueue`, `jobs` (with `jobs retry` and `jobs purge`) and `score --once`: the scoring queue
from the command line."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reconciler.cli.app import app, settings_of
from reconciler.cli.console import err, out
from reconciler.cli.state_cmds import FormatOption, OutputFormat
from reconciler.core import jsonsafe
from reconciler.core.text import escape_control
from reconciler.errors import Problem, StateError

if TYPE_CHECKING:
    from reconciler.core.scoring import JobInput

PROGRESS_FROM = 5_000  # lines; smaller files load too fast for a bar to help


@app.command()
def enqueue(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(help="The task whose route scores the items.")],
    source: Annotated[str, typer.Argument(help="A JSON-lines file, or - for stdin.")],
    allow_unrouted: Annotated[
        bool,
        typer.Option("--allow-unrouted", help="Queue jobs for a task that has no route yet."),
    ] = False,
) -> int:
    """Add items to the scoring queue; an item the task already has a job for is skipped."""
    from reconciler.service import queue
    from reconciler.service.database import open_database

    check_task(task)
    path = None if source == "-" else Path(source)
    name = "<stdin>" if path is None else escape_control(source)
    items, repeated = _read_items(name, path)
    settings = settings_of(ctx)
    with open_database(settings.database_url) as engine:
        routed = queue.routed_tasks(engine)
        if task not in routed and not allow_unrouted:
            _refuse_unrouted(task, routed)
        done = queue.enqueue(engine, task, items)
    out.print(f"{task}: {done.added} added, {_skipped_text(done.skipped, repeated)} from {name}.")
    if task not in routed:
        err.print(f"warning: task {task} has no route yet; its jobs wait until it has one.")
    return 0


def _refuse_unrouted(task: str, routed: list[str]) -> None:
    from reconciler.core.suggest import suggest

    hint = suggest(task, routed) if routed else "no task has a route yet"
    raise StateError(
        f"task {task!r} has no route ({hint}); nothing was queued. Pass --allow-unrouted to "
        "queue its jobs now for a route you will declare later"
    )


def _skipped_text(skipped: dict[str, int], repeated: int) -> str:
    """`3 skipped (1 already queued, 2 already done, 1 repeated an id of an earlier line)`."""
    total = sum(skipped.values()) + repeated
    parts = [f"{count} already {status}" for status, count in sorted(skipped.items()) if count]
    if repeated:
        parts.append(f"{repeated} repeated an id of an earlier line")
    return f"{total} skipped" + (f" ({', '.join(parts)})" if parts else "")


def _read_items(name: str, path: Path | None) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """Every line as (id, payload), and how many lines repeated an earlier line's id (the
    first line with an id wins); every bad line reported with its number, nothing added.

    `name` is how the source is shown; `path` is None for standard input.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from reconciler.problem_report import problems_text

    try:
        # JSON lines end at "\n" only: a JSON string may hold U+2028 or "\x1c", which
        # `splitlines` would also split at, and every later line number would be off.
        lines = (path.read_text("utf-8") if path else sys.stdin.read()).split("\n")
    except OSError as exc:
        raise StateError(f"cannot read {name}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise StateError(f"{name} is not UTF-8 text") from None
    items: dict[str, dict[str, Any]] = {}
    repeated = 0
    problems: list[Problem] = []
    progress = Progress(
        TextColumn("reading"), BarColumn(), MofNCompleteColumn(), console=err.rich, transient=True
    )
    with progress:
        bar = progress.add_task("lines", total=len(lines), visible=len(lines) >= PROGRESS_FROM)
        for number, line in enumerate(lines, 1):
            if number % 1000 == 0:
                progress.update(bar, completed=number)
            if not line.strip():
                continue
            item = _item(name, number, line, problems)
            if item is not None and item.id in items:
                repeated += 1
            elif item is not None:
                items[item.id] = item.payload()
    if problems:
        err.print(problems_text(problems))
        raise StateError(f"{len(problems)} bad line(s) in {name}; nothing was queued")
    if not items:
        raise StateError(f"{name} holds no items; write one JSON object per line")
    return list(items.items()), repeated


def _item(name: str, number: int, line: str, problems: list[Problem]) -> JobInput | None:
    from pydantic import ValidationError

    from reconciler.core.scoring import JobInput
    from reconciler.core.wording import error_message

    try:
        value = jsonsafe.loads(line)
    except jsonsafe.JsonRejected as exc:
        problems.append(_json_problem(name, number, exc))
        return None
    try:
        return JobInput.model_validate(value)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        path = escape_control(".".join(str(p) for p in first["loc"]))
        problems.append(
            Problem(
                name,
                number,
                1,
                path,
                "item",
                error_message(first),
                'write {"id": "...", "text": "..."} or {"id": "...", "messages": [...]}',
            )
        )
        return None


def _json_problem(name: str, number: int, exc: jsonsafe.JsonRejected) -> Problem:
    """A line that is not JSON within bounds, at the column the parser stopped when known."""
    syntax = exc.__context__  # the parser's own error, when the text is not JSON at all
    if isinstance(syntax, json.JSONDecodeError):
        column, message = syntax.colno, f"not JSON: {syntax.msg}"
    else:
        column, message = 1, f"not JSON: {exc}"
    return Problem(name, number, column, "", "json", message, "write one JSON object per line")


jobs_app = typer.Typer(
    name="jobs",
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(jobs_app)

ItemsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--item", metavar="<id>", help="Only the job of this item id; repeat for several."
    ),
]


@jobs_app.callback(invoke_without_command=True)
def jobs(ctx: typer.Context, output: FormatOption = OutputFormat.text) -> int:
    """The scoring queue: jobs by task and status, and the dead jobs with their errors.

    `jobs retry` puts dead jobs back in the queue; `jobs purge` deletes finished ones.
    """
    if ctx.invoked_subcommand is not None:
        return 0
    from reconciler.service import queue
    from reconciler.service.database import open_database

    settings = settings_of(ctx)
    with open_database(settings.database_url) as engine:
        counted, dead = queue.summary(engine, 20)
    statuses = queue.STATUSES
    tasks = sorted({task for task, _ in counted})
    if output is OutputFormat.json:
        document = {
            "format_version": 1,
            "tasks": {t: {s: counted.get((t, s), 0) for s in statuses} for t in tasks},
            "dead": [
                {**d, "finished_at": d["finished_at"].isoformat() if d["finished_at"] else None}
                for d in dead
            ],
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return 0
    _show_jobs(tasks, statuses, counted, dead)
    return 0


def _show_jobs(
    tasks: list[str],
    statuses: tuple[str, ...],
    counted: dict[tuple[str, str], int],
    dead: list[dict[str, Any]],
) -> None:
    from rich.table import Table

    if not tasks:
        out.print("The scoring queue is empty.")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("TASK", *(s.upper() for s in statuses)):
        table.add_column(column, no_wrap=True, justify="left" if column == "TASK" else "right")
    for task in tasks:
        table.add_row(task, *(str(counted.get((task, s), 0)) for s in statuses))
    out.print(table)
    for job in dead:
        out.print(
            escape_control(
                f"dead: {job['task']}/{job['item_id']} after {job['attempts']} attempt(s): "
                f"{job['error']}"
            )
        )


@jobs_app.command()
def retry(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(help="The task whose dead jobs go back in the queue.")],
    dead: Annotated[bool, typer.Option("--dead", help="Every dead job of the task.")] = False,
    item: ItemsOption = None,
) -> int:
    """Put dead jobs back in the queue: due now, attempts reset, the last error kept as
    `previous: ...`. Safe while workers run: only dead jobs are touched."""
    from reconciler.service import queue
    from reconciler.service.database import open_database

    check_task(task)
    if not dead and not item:
        raise StateError(
            "say which jobs to put back: --dead for every dead job of the task, or --item ID"
        )
    wanted = sorted(set(item)) if item else None
    settings = settings_of(ctx)
    with open_database(settings.database_url) as engine:
        count = queue.retry(engine, task, wanted)
    if wanted is None:
        out.print(f"{task}: {count} dead job(s) put back in the queue.")
        return 0
    left = len(wanted) - count
    other = f"; {left} not dead (or not queued at all) left as they are" if left else ""
    out.print(f"{task}: {count} of {len(wanted)} item(s) put back in the queue{other}.")
    return 0


@jobs_app.command()
def purge(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(help="The task whose finished jobs are deleted.")],
    done: Annotated[
        bool, typer.Option("--done", help="Delete done jobs and their answers.")
    ] = False,
    dead: Annotated[bool, typer.Option("--dead", help="Delete dead jobs.")] = False,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            metavar="<duration>",
            help="Only jobs finished longer ago than this (7d, 12h).",
        ),
    ] = None,
) -> int:
    """Delete finished jobs of a task; queued and leased ones are never touched."""
    from reconciler.core.scoring import DURATION_HINT, parse_duration
    from reconciler.service import queue
    from reconciler.service.database import open_database

    check_task(task)
    if not done and not dead:
        raise StateError("say what to purge: --done, --dead, or both")
    age = None if older_than is None else parse_duration(older_than)
    if older_than is not None and age is None:
        raise StateError(f"--older-than {escape_control(older_than)!r}: {DURATION_HINT}")
    statuses = [s for s, wanted in ((queue.DONE, done), (queue.DEAD, dead)) if wanted]
    before = None if age is None else _ago(age)
    settings = settings_of(ctx)
    with open_database(settings.database_url) as engine:
        deleted = queue.purge(engine, task, statuses, before)
    shown = " and ".join(f"{deleted[status]} {status}" for status in statuses)
    when = f" finished more than {older_than} ago" if older_than else ""
    out.print(f"{task}: purged {shown} job(s){when}.")
    return 0


def _ago(age: timedelta) -> datetime:
    now = datetime.now(UTC)
    try:
        return now - age
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


def check_task(task: str) -> None:
    from reconciler.core.spec import NAME_HINT, NAME_PATTERN

    if not re.fullmatch(NAME_PATTERN, task):
        raise StateError(f"task {escape_control(task)!r} is not a valid name: {NAME_HINT}")


def _say_wait(seconds: float, count: int) -> None:
    from reconciler.core.scoring import MAX_RETRY_AFTER_S

    err.print(
        f"waiting {seconds:.0f} s for {count} queued job(s) to be due: a provider asked to be "
        f"retried later (a Retry-After is honoured up to {MAX_RETRY_AFTER_S:.0f} s)"
    )


@app.command()
def score(
    ctx: typer.Context,
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            show_default=False,
            help="Work the queue until nothing is due, then exit (the default).",
        ),
    ] = True,
) -> int:
    """Score queued items through their routes: probe readiness, work the queue, then exit.

    `reconciler run` scores continuously.
    """
    import asyncio

    from reconciler.core.readiness import SERVABLE
    from reconciler.core.scoring import percentile
    from reconciler.service import queue, readiness
    from reconciler.service.config import provider_types
    from reconciler.service.database import open_database
    from reconciler.service.scoring import ScoringWorker

    settings = settings_of(ctx)
    registry = provider_types()
    with open_database(settings.database_url) as engine:
        verdicts = readiness.check_now(engine, registry)
        servable = {v.task for v in verdicts if v.status in SERVABLE}
        for verdict in verdicts:
            if verdict.status not in SERVABLE:
                err.print(
                    f"{verdict.task}: {verdict.status.value} ({verdict.detail}); its jobs wait"
                )
        worker = ScoringWorker(engine, registry, on_wait=_say_wait)
        stats = asyncio.run(worker.drain(servable))
        counted, _ = queue.summary(engine, 0)
    waiting = sum(n for (task, status), n in counted.items() if status == queue.QUEUED)
    p50 = percentile(stats.latencies_ms, 0.5)
    out.print(
        f"scored {stats.done}, retried {stats.retried}, dead {stats.dead}; "
        f"{waiting} still queued (tasks not ready); model latency p50 {p50:.0f} ms."
    )
    return 0
