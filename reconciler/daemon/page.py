"""The status page: one server-rendered HTML page a person can read at a glance. No build step."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

from reconciler import __version__
from reconciler.core.readiness import (
    SERVABLE,
    Reason,
    Status,
    Verdict,
    all_required_servable,
)
from reconciler.core.text import untrusted
from reconciler.daemon.state import DaemonState
from reconciler.service.queue import TaskQueue

STATUS_COLOURS = {
    Status.ready: "#1a7f37",
    Status.degraded: "#9a6700",
    Status.not_ready: "#cf222e",
    Status.stale: "#8250df",
}
DISABLED_COLOUR = "#59636e"
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #1f2328;
       padding: 0 1rem; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; } h2 { font-size: 1.1rem; margin: 1.75rem 0 .5rem; }
.meta { color: #59636e; } table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #d1d9e0;
         vertical-align: top; }
th { font-size: .8rem; text-transform: uppercase; color: #59636e; }
.badge { color: #fff; border-radius: 1rem; padding: .1rem .6rem; font-size: .85rem;
         white-space: nowrap; }
.banner { border-radius: .4rem; padding: .75rem 1rem; margin: 1rem 0; }
.ok { background: #dafbe1; } .bad { background: #ffebe9; } .warn { background: #fff8c5; }
code, .mono { font-family: ui-monospace, monospace; font-size: .85rem; }
.remedy { color: #59636e; } ul { margin: .25rem 0; padding-left: 1.25rem; }
footer { margin-top: 2rem; }
"""


def status_page(state: DaemonState, now: datetime) -> str:
    """The page at `/`: overall verdict, current error, tasks, last apply, drift."""
    parts = [
        head(f"reconciler: {_overall_word(state)}", refresh=True),
        "<h1>reconciler</h1>",
        f"<div class='meta'>config <code>{escape(state.config_dir)}</code> &middot; database "
        f"<code>{escape(state.database)}</code> &middot; generation {state.generation or 0} "
        f"&middot; {_leader(state)} &middot; up since {when(state.started_at, now)}</div>",
        _banner(state),
        _tasks(state, now),
        _queue(state, now),
        _last_apply(state, now),
        _drift(state),
        "<p class='meta'>Every provider, its endpoint and its last probe: "
        "<a href='/providers'>providers</a>. JSON: <a href='/api/v1/status'>status</a>, "
        "<a href='/api/v1/readiness'>readiness</a>, <a href='/api/v1/routes'>routes</a>, "
        "<a href='/api/v1/providers'>providers</a>, <a href='/api/v1/revisions'>revisions</a>, "
        "<a href='/metrics'>metrics</a>, <a href='/docs'>API docs</a>. "
        "This page refreshes every 5 s.</p>",
        footer(),
        "</body></html>",
    ]
    return "\n".join(parts)


def head(title: str, refresh: bool = False) -> str:
    """A page's start, up to its `<body>`: `title` (escaped here), the inline style."""
    meta = "<meta http-equiv='refresh' content='5'>" if refresh else ""
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>{meta}"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
    )


def footer() -> str:
    """The line at the foot of every page: the version that serves it."""
    return f"<footer class='meta'>reconciler {escape(__version__)}</footer>"


def api_page(openapi: dict[str, Any]) -> str:
    """The page at `/docs`: every endpoint of the OpenAPI document, with nothing from elsewhere."""
    rows = "".join(
        _endpoint_row(method, path, operation)
        for path, operations in openapi.get("paths", {}).items()
        for method, operation in operations.items()
    )
    info = openapi.get("info", {})
    return "\n".join(
        [
            head("reconciler: API"),
            f"<h1>{escape(str(info.get('title', 'API')))} API</h1>",
            f"<p class='meta'>{escape(str(info.get('summary', '')))} The full description: "
            "<a href='/openapi.json'>/openapi.json</a> (OpenAPI 3); back to the "
            "<a href='/'>status page</a>.</p>",
            "<table><thead><tr><th>Method</th><th>Path</th><th>What it answers</th>"
            f"<th>Parameters</th></tr></thead><tbody>{rows}</tbody></table>",
            footer(),
            "</body></html>",
        ]
    )


def _endpoint_row(method: str, path: str, operation: dict[str, Any]) -> str:
    description = str(operation.get("description") or operation.get("summary") or "")
    first = description.strip().split("\n\n", 1)[0]
    parameters = ", ".join(
        f"<code>{escape(str(p.get('name', '')))}</code>" for p in operation.get("parameters", [])
    )
    link = (
        f"<a href='{escape(path)}'>{escape(path)}</a>"
        if method == "get" and "{" not in path
        else escape(path)
    )
    return (
        f"<tr><td class='mono'>{escape(method.upper())}</td><td class='mono'>{link}</td>"
        f"<td>{escape(first)}</td><td>{parameters or '&mdash;'}</td></tr>"
    )


def _overall_word(state: DaemonState) -> str:
    if state.error is not None:
        return "config problem"
    if state.readiness_at is None:
        return "starting"
    return "ready" if all_required_servable(state.verdicts) else "not ready"


def _leader(state: DaemonState) -> str:
    if state.leader:
        return "this replica reconciles"
    return f"follower ({escape(state.leader_note)})"


def _banner(state: DaemonState) -> str:
    error = state.error
    if error is None:
        if state.readiness_at is None:
            return "<div class='banner warn'>Starting: first readiness check pending.</div>"
        if all_required_servable(state.verdicts):
            return "<div class='banner ok'><b>All required tasks can be served.</b></div>"
        down = ", ".join(
            escape(v.task) for v in state.verdicts if v.required and v.status not in SERVABLE
        )
        return f"<div class='banner bad'><b>A required task cannot be served:</b> {down}.</div>"
    items = "".join(
        f"<li><code>{escape(p.file)}:{p.line}:{p.column}</code> <code>{escape(p.path)}</code>: "
        f"{escape(p.message)}{' &mdash; ' + escape(p.hint) if p.hint else ''}</li>"
        for p in error.problems[:50]
    )
    return (
        f"<div class='banner bad'><b>{escape(error.kind.replace('_', ' '))}:</b> "
        f"{escape(error.message)} <span class='meta'>(since {error.since:%H:%M:%S} UTC)</span>"
        f"{'<ul>' + items + '</ul>' if items else ''}</div>"
    )


def _tasks(state: DaemonState, now: datetime) -> str:
    if not state.verdicts:
        return "<h2>Tasks</h2><p class='meta'>No readiness verdicts yet.</p>"
    rows = "".join(_task_row(v, now) for v in state.verdicts)
    return (
        "<h2>Tasks</h2><table><thead><tr><th>Task</th><th>Status</th><th>Provider / model</th>"
        "<th>Why, and what to do</th><th>Checked</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _task_row(verdict: Verdict, now: datetime) -> str:
    # A route disabled on purpose is not an alarm: grey, not red.
    disabled = verdict.reason is Reason.route_disabled
    colour = DISABLED_COLOUR if disabled else STATUS_COLOURS[verdict.status]
    required = " <span class='meta'>(required)</span>" if verdict.required else ""
    target = escape(f"{verdict.provider}/{verdict.model}") if verdict.provider else "-"
    if verdict.served_by and verdict.status is Status.degraded:
        target += f" &rarr; {escape(verdict.served_by)}"
    why = ""
    if verdict.reason or verdict.detail:
        reason = f"<code>{escape(verdict.reason.value)}</code> " if verdict.reason else ""
        why = f"{reason}{escape(verdict.detail)}"
        if verdict.remedy:
            why += f"<div class='remedy'>Fix: {escape(verdict.remedy)}</div>"
    latency = f", {verdict.latency_ms:.0f} ms" if verdict.latency_ms is not None else ""
    checked = when(verdict.checked_at, now) + latency if verdict.checked_at else "never"
    return (
        f"<tr><td><b>{escape(verdict.task)}</b>{required}</td>"
        f"<td><span class='badge' style='background:{colour}'>{verdict.status.value}</span></td>"
        f"<td class='mono'>{target}</td><td>{why or '&mdash;'}</td><td>{checked}</td></tr>"
    )


def _queue(state: DaemonState, now: datetime) -> str:
    """Depth by task and status, what finished in the last minutes, the latest dead jobs."""
    view = state.queue
    if view is None or not view.tasks:
        return (
            "<h2>Scoring queue</h2><p class='meta'>No jobs. Add items with "
            "<code>reconciler enqueue TASK FILE.jsonl</code>.</p>"
        )
    minutes = view.window_s / 60
    rows = "".join(_queue_row(task, minutes) for task in view.tasks)
    table = (
        "<table><thead><tr><th>Task</th><th>Queued</th><th>Leased</th><th>Done</th>"
        f"<th>Dead</th><th>Done, last {minutes:g} min</th><th>Mean latency</th>"
        f"<th>Results</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    dead = "".join(
        f"<li><span class='mono'>{_text(job['task'])}/{_text(job['item_id'])}</span> after "
        f"{job['attempts']} attempt(s): "
        f"<span class='remedy'>{_text(job['error'] or '', 300)}</span></li>"
        for job in view.dead
    )
    latest = (
        "<p>Latest dead jobs (<code>reconciler jobs retry TASK --dead</code> puts them back "
        f"once the route is fixed):</p><ul>{dead}</ul>"
        if dead
        else ""
    )
    return f"<h2>Scoring queue</h2><p class='meta'>As of {when(view.at, now)}.</p>{table}{latest}"


def _queue_row(task: TaskQueue, minutes: float) -> str:
    counts = task.statuses
    name = _text(task.task)
    link = f"/api/v1/results?task={quote(task.task)}"
    rate = task.done_recently / minutes if minutes else 0
    latency = f"{task.mean_latency_ms:.0f} ms" if task.mean_latency_ms is not None else "&mdash;"
    recent = f"{task.done_recently} ({rate:.1f}/min)"
    if task.dead_recently:
        recent += f", {task.dead_recently} dead"
    cells = [counts.get(status, 0) for status in ("queued", "leased", "done", "dead")]
    return (
        f"<tr><td class='mono'>{name}</td>"
        + "".join(f"<td>{n}</td>" for n in cells)
        + f"<td>{recent}</td><td>{latency}</td>"
        f"<td><a href='{escape(link)}'>JSON</a> &middot; "
        f"<code>reconciler results {name}</code></td></tr>"
    )


def _text(value: Any, limit: int = 200) -> str:
    """Text a database row holds, bounded, control characters escaped, for HTML."""
    return escape(untrusted(str(value), (), limit=limit))


def _last_apply(state: DaemonState, now: datetime) -> str:
    last = state.last_apply
    if last is None:
        return "<h2>Last apply</h2><p class='meta'>No change applied by this process yet.</p>"
    changes = "".join(f"<li class='mono'>{escape(c)}</li>" for c in last.changes)
    return (
        f"<h2>Last apply</h2><p>Generation {last.generation}, {when(last.at, now)}: "
        f"{escape(last.summary)}</p><ul>{changes}</ul>"
    )


def _drift(state: DaemonState) -> str:
    if not state.drift:
        return ""
    items = "".join(f"<li class='mono'>{escape(d)}</li>" for d in state.drift[:50])
    return (
        "<h2>Drift</h2><div class='banner warn'>These rows differ from the files and are not "
        f"being corrected (<code>--drift=report</code>):<ul>{items}</ul></div>"
    )


def when(moment: datetime, now: datetime) -> str:
    seconds = int((now - moment).total_seconds())
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{moment:%Y-%m-%d %H:%M} UTC"
