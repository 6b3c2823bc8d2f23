"""Rendering results as text for people, JSON for programs, annotations for GitHub."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict

from reconciler.core.plan import Action, Op, Plan, diff, is_secret_ref
from reconciler.errors import Problem

PROBLEMS_FORMAT_VERSION = 1


def problems_text(problems: Sequence[Problem]) -> str:
    """`file:line:col: path: message` lines, each followed by an indented hint."""
    lines = []
    for p in problems:
        place = f"{p.file}:{p.line}:{p.column}" if p.line else p.file
        where = f" {p.path}:" if p.path else ""
        lines.append(f"{place}:{where} {p.message}")
        if p.hint:
            lines.append(f"    hint: {p.hint}")
    return "\n".join(lines)


def problems_json(problems: Sequence[Problem], files: int) -> str:
    """The stable `validate --format json` document (see the README)."""
    document = {
        "version": PROBLEMS_FORMAT_VERSION,
        "valid": not problems,
        "files": files,
        "errors": [asdict(p) for p in problems],
    }
    return json.dumps(document, indent=2)


def problems_github(problems: Sequence[Problem]) -> str:
    """GitHub Actions workflow commands: one `::error` annotation per problem."""
    lines = []
    for p in problems:
        props = [f"file={_prop(p.file)}"]
        if p.line:
            props += [f"line={p.line}", f"col={p.column}"]
        props.append(f"title={_prop(p.path or p.code)}")
        message = p.message + (f" (hint: {p.hint})" if p.hint else "")
        lines.append(f"::error {','.join(props)}::{_data(message)}")
    return "\n".join(lines)


def _data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(value: str) -> str:
    return _data(value).replace(":", "%3A").replace(",", "%2C")


SIGNS = {"create": "+", "update": "~", "delete": "-", "adopt": "±"}


def plan_text(plan: Plan, summary: str) -> str:
    """The plan in the style of Terraform: one block per action, then the summary line."""
    lines: list[str] = []
    if plan.actions:
        lines.append("reconciler will perform the following actions:")
        lines.append("")
        for action in plan.actions:
            lines.extend(_action_lines(action))
    else:
        lines.append("No changes. The database matches the files.")
    if plan.unmanaged:
        lines.append("")
        lines.append("Not managed by the files (left alone):")
        lines.extend(f"  {kind} {key!r}" for kind, key in plan.unmanaged)
    if plan.refusals:
        lines.append("")
        lines.append("Refused:")
        lines.extend(f"  ! {reason}" for reason in plan.refusals)
    lines.append("")
    lines.append(summary)
    return "\n".join(lines)


def _action_lines(action: Action) -> list[str]:
    where = f"  ({action.source_file}:{action.source_line})" if action.source_file else ""
    drift = "  [drift: changed outside the files]" if action.drift else ""
    head = f"  {SIGNS[action.op]} {action.op} {action.kind} {action.key!r}{where}{drift}"
    lines = [head]
    if action.op is Op.create and action.essence is not None:
        lines += [f"      {c.path}: {_value(c.new)}" for c in diff({}, action.essence)]
    else:
        lines += [f"      {c.path}: {_value(c.old)} -> {_value(c.new)}" for c in action.changes]
    lines.append("")
    return lines


def _value(value: object) -> str:
    if value is None:
        return "(none)"
    if is_secret_ref(value):
        return f"{{env: {value['env']}}}"
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
