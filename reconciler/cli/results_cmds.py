"""`results` and `try`: the answers, read back from the queue or asked for one item.

`results` streams: it reads RESULTS_PAGE rows at a time, by task and item id, and writes each page
before reading the next, so a million results take the memory of one page. Text and CSV cells
have their control characters escaped; a CSV cell that a spreadsheet would run as a formula
(`=`, `+`, `-`, `@` first) is written with a leading `'`.
"""

from __future__ import annotations

import csv
import itertools
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from reconciler.cli.app import app, settings_of
from reconciler.cli.console import out
from reconciler.cli.queue_cmds import check_task
from reconciler.cli.state_cmds import FormatOption, OutputFormat
from reconciler.core.text import bound, escape_control
from reconciler.errors import StateError

if TYPE_CHECKING:
    from reconciler.service.ask import Answered

FORMULA_LEADS = ("=", "+", "-", "@")
MAX_CELL = 40  # characters of a text-table column, the last one excepted
MAX_LAST_CELL = 300
WIDTH_SAMPLE = 1000  # rows the text table's column widths are taken from
FIXED_COLUMNS = ("task", "item_id", "status")
COST_COLUMNS = ("provider", "model", "latency_ms", "prompt_tokens", "completion_tokens")
TAIL_COLUMNS = ("attempts", "finished_at", "error")


class ResultFormat(StrEnum):
    text = "text"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


class StatusChoice(StrEnum):
    done = "done"
    dead = "dead"
    all = "all"


class Totals:
    """Jobs and tokens by (task, provider, model), counted as the rows stream past."""

    def __init__(self) -> None:
        self.count = 0
        self.by_model: dict[tuple[str, str, str], list[int]] = {}

    def tally(self, rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for row in rows:
            self.count += 1
            if row["provider"] is not None:
                key = (row["task"], row["provider"], row["model"])
                seen = self.by_model.setdefault(key, [0, 0, 0])
                seen[0] += 1
                seen[1] += row["prompt_tokens"] or 0
                seen[2] += row["completion_tokens"] or 0
            yield row

    def document(self) -> dict[str, Any]:
        keys = ("task", "provider", "model", "jobs", "prompt_tokens", "completion_tokens")
        tokens = [dict(zip(keys, (*k, *n), strict=True)) for k, n in sorted(self.by_model.items())]
        return {"count": self.count, "tokens": tokens}

    def lines(self) -> list[str]:
        lines = [f"{self.count} result(s)."]
        for (task, provider, model), (jobs, given, written) in sorted(self.by_model.items()):
            lines.append(
                escape_control(
                    f"tokens: {task} {provider}/{model}: {jobs} job(s), "
                    f"{given} prompt + {written} completion"
                )
            )
        return lines


@app.command()
def results(
    ctx: typer.Context,
    task: Annotated[str | None, typer.Argument(help="Only this task's results.")] = None,
    status: Annotated[
        StatusChoice, typer.Option("--status", help="Done jobs, dead jobs, or both.")
    ] = StatusChoice.done,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="<time|duration>",
            help="Finished at or after: an ISO time, or a duration (1h, 7d).",
        ),
    ] = None,
    output: Annotated[
        ResultFormat, typer.Option("--format", help="Output format.")
    ] = ResultFormat.text,
    path: Annotated[
        Path | None, typer.Option("--out", help="Write to this file instead of stdout.")
    ] = None,
) -> int:
    """The answers of finished jobs by task and item id: answer fields, who answered, latency,
    tokens, attempts, when, and the error of dead jobs."""
    from reconciler.service import results
    from reconciler.service.database import open_database

    if task is not None:
        check_task(task)
    statuses = results.FINISHED if status is StatusChoice.all else (status.value,)
    query = results.ResultQuery(task, statuses, _since(since))
    settings = settings_of(ctx)
    with open_database(settings.database_url) as engine:
        rows_read = results.stream(engine, query)
        fields = results.answer_fields(engine, task)
        totals = Totals()
        rows = totals.tally(rows_read)
        shape = Shape(fields, task is None, status)
        with _output(path, output) as stream:
            _write(output, rows, stream, shape, totals)
    if path is not None:
        out.print(f"{totals.count} result(s) written to {escape_control(str(path))}.")
    return 0


def _since(given: str | None) -> datetime | None:
    from reconciler.core.scoring import parse_since

    if given is None:
        return None
    moment = parse_since(given, datetime.now(UTC))
    if moment is None:
        raise StateError(
            f"--since {escape_control(given)!r}: write an ISO time (2025-05-01T12:00:00Z) "
            "or a duration such as 30m, 1h or 7d"
        )
    return moment


@contextmanager
def _output(path: Path | None, output: ResultFormat) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    newline = "" if output is ResultFormat.csv else None
    try:
        stream = path.open("w", encoding="utf-8", newline=newline)
    except OSError as exc:
        raise StateError(f"cannot write {escape_control(str(path))}: {exc.strerror}") from None
    with stream:
        yield stream


@dataclass(frozen=True)
class Shape:
    """What the text and CSV outputs show: the answer fields as columns, the tasks, the status."""

    fields: list[str]
    all_tasks: bool
    status: StatusChoice


def _write(
    output: ResultFormat,
    rows: Iterable[dict[str, Any]],
    stream: IO[str],
    shape: Shape,
    totals: Totals,
) -> None:
    if output is ResultFormat.jsonl:
        for row in rows:
            stream.write(json.dumps(_document(row)) + "\n")
    elif output is ResultFormat.json:
        _write_json(rows, stream, totals)
    elif output is ResultFormat.csv:
        _write_csv(rows, stream, shape.fields)
    else:
        _write_text(rows, stream, shape, totals)


def _document(row: dict[str, Any]) -> dict[str, Any]:
    """One result as JSON: the answer nested under `answer`."""
    document = {k: row[k] for k in FIXED_COLUMNS}
    document["answer"] = row["result"]
    document.update({k: row[k] for k in (*COST_COLUMNS, *TAIL_COLUMNS)})
    document["finished_at"] = _iso(row["finished_at"])
    return document


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def _write_json(rows: Iterable[dict[str, Any]], stream: IO[str], totals: Totals) -> None:
    """One JSON document, written as the rows come: the results, then the token summary."""
    stream.write('{"format_version": 1, "results": [')
    for number, row in enumerate(rows):
        stream.write(("\n  " if number == 0 else ",\n  ") + json.dumps(_document(row)))
    stream.write('\n], "summary": ' + json.dumps(totals.document()) + "}\n")


def _write_csv(rows: Iterable[dict[str, Any]], stream: IO[str], fields: list[str]) -> None:
    """A header, then a row per job: an answer field named like a column is `answer.NAME`."""
    taken = {*FIXED_COLUMNS, "answer", *COST_COLUMNS, *TAIL_COLUMNS}
    names = [f"answer.{f}" if f in taken else f for f in fields]
    header = [*FIXED_COLUMNS, *names, "answer", *COST_COLUMNS, *TAIL_COLUMNS]
    writer = csv.writer(stream)
    writer.writerow([_csv_cell(h) for h in header])
    for row in rows:
        answer = row["result"] if isinstance(row["result"], dict) else {}
        rest = {k: v for k, v in answer.items() if k not in fields}
        cells = [row[k] for k in FIXED_COLUMNS]
        cells += [answer.get(f) for f in fields]
        cells.append(rest or None)
        cells += [row[k] for k in COST_COLUMNS]
        cells += [row["attempts"], _iso(row["finished_at"]), row["error"]]
        writer.writerow([_csv_cell(c) for c in cells])


def _csv_cell(value: Any) -> str:
    text = _plain(value)
    if isinstance(value, str) and text.startswith(FORMULA_LEADS):
        return "'" + text
    return text


def _plain(value: Any) -> str:
    """A value as one line of text: JSON for objects and lists, controls escaped."""
    if isinstance(value, str):
        return escape_control(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return escape_control(str(value))


def _text_columns(shape: Shape) -> list[str]:
    columns = ["TASK"] if shape.all_tasks else []
    columns += ["ITEM", *(["STATUS"] if shape.status is StatusChoice.all else [])]
    if shape.status is not StatusChoice.dead:
        columns += [f.upper() for f in shape.fields] + ["SERVED BY", "LATENCY", "TOKENS"]
    columns += ["ATTEMPTS", "FINISHED"]
    return columns + (["ERROR"] if shape.status is not StatusChoice.done else [])


def _text_cells(row: dict[str, Any], fields: list[str], columns: list[str]) -> list[str]:
    answer = row["result"] if isinstance(row["result"], dict) else {}
    served = f"{row['provider']}/{row['model']}" if row["provider"] else ""
    latency = f"{row['latency_ms']:.0f} ms" if row["latency_ms"] is not None else ""
    tokens = row["prompt_tokens"], row["completion_tokens"]
    finished = _iso(row["finished_at"])
    named: dict[str, Any] = {
        "TASK": row["task"],
        "ITEM": row["item_id"],
        "STATUS": row["status"],
        **{f.upper(): answer.get(f) for f in fields},
        "SERVED BY": served,
        "LATENCY": latency,
        "TOKENS": "" if tokens == (None, None) else "+".join(str(t or 0) for t in tokens),
        "ATTEMPTS": row["attempts"],
        "FINISHED": finished[:19].replace("T", " ") if finished else "",
        "ERROR": row["error"],
    }
    return [_plain(named[c]) for c in columns]


def _write_text(
    rows: Iterable[dict[str, Any]], stream: IO[str], shape: Shape, totals: Totals
) -> None:
    """A table whose widths come from the first rows; longer cells are cut with `…`."""
    iterator = iter(rows)
    first = list(itertools.islice(iterator, WIDTH_SAMPLE))
    if not first:
        kind = "finished" if shape.status is StatusChoice.all else shape.status.value
        stream.write(f"No {kind} jobs.\n")
        return
    columns = _text_columns(shape)
    widths = [len(c) for c in columns]
    for row in first:
        for i, cell in enumerate(_text_cells(row, shape.fields, columns)):
            widths[i] = min(max(widths[i], len(cell)), MAX_CELL)
    stream.write(_line(columns, widths) + "\n")
    for row in itertools.chain(first, iterator):
        stream.write(_line(_text_cells(row, shape.fields, columns), widths) + "\n")
    stream.write("\n".join(["", *totals.lines()]) + "\n")


def _line(cells: list[str], widths: list[int]) -> str:
    shown = [_cut(c, w).ljust(w) for c, w in zip(cells[:-1], widths[:-1], strict=True)]
    return "  ".join([*shown, bound(cells[-1], MAX_LAST_CELL)]).rstrip()


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@app.command("try")
def try_(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(help="The task whose route answers.")],
    text: Annotated[str, typer.Argument(help="The item's text, or - to read it from stdin.")],
    output: FormatOption = OutputFormat.text,
) -> int:
    """Send one item through the task's route as the worker would, and print the answer and who
    gave it; nothing is queued or stored."""
    from pydantic import ValidationError

    from reconciler.core.scoring import JobInput
    from reconciler.core.wording import error_message
    from reconciler.service import results
    from reconciler.service.ask import RouteFailure
    from reconciler.service.database import open_database

    check_task(task)
    given = sys.stdin.read() if text == "-" else text
    try:
        item = JobInput(id="try", text=given)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise StateError(f"the item's text: {error_message(first)}") from None
    settings = settings_of(ctx)
    with open_database(settings.database_url) as engine:
        try:
            answered = results.try_item(engine, task, item.payload())
        except RouteFailure as failure:
            lines = "".join(f"\n  {line}" for line in failure.lines)
            raise StateError(f"no provider could answer for task {task}:{lines}") from None
    _show_answer(task, answered, output)
    return 0


def _show_answer(task: str, answered: Answered, output: OutputFormat) -> None:
    from reconciler.service import results

    answer = results.shown_answer(answered)
    if output is OutputFormat.json:
        document = {
            "format_version": 1,
            "task": task,
            "answer": answer,
            "provider": answered.provider,
            "model": answered.model,
            "latency_ms": answered.latency_ms,
            "prompt_tokens": answered.prompt_tokens,
            "completion_tokens": answered.completion_tokens,
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    width = max((len(escape_control(k)) for k in answer), default=0)
    for key, value in answer.items():
        out.print(f"{escape_control(key).ljust(width)}  {_plain(value)}")
    tokens = f"{_count(answered.prompt_tokens)} prompt + {_count(answered.completion_tokens)}"
    out.print(
        escape_control(
            f"answered by {answered.provider}/{answered.model} in "
            f"{answered.latency_ms:.0f} ms; tokens: {tokens} completion"
        )
    )


def _count(tokens: int | None) -> str:
    return "?" if tokens is None else str(tokens)
