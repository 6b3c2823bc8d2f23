"""Rendering plans and applied changes as text for people and JSON for programs.

Config problems have their own module, `reconciler.problem_report`, so that `validate` never
loads the plan model.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

from reconciler.core.field_rules import masked
from reconciler.core.plan import Action, FieldChange, Op, Plan, diff, is_secret_ref

SIGNS = {"create": "+", "update": "~", "delete": "-", "adopt": "±"}


class Tone(StrEnum):
    """What a line of a plan says, for a terminal to colour; the text is the same without it."""

    create = "create"
    update = "update"
    delete = "delete"
    adopt = "adopt"
    refusal = "refusal"
    summary = "summary"


Line = tuple[str, Tone | None]


def summary_line(plan: Plan) -> str:
    """`Plan: 1 to create, 2 to update, 0 to delete, 40 unchanged.` (adopt shown when any)."""
    adopt = plan.count(Op.adopt)
    adopted = f"{adopt} to adopt, " if adopt else ""
    return (
        f"Plan: {plan.count(Op.create)} to create, {adopted}"
        f"{plan.count(Op.update)} to update, {plan.count(Op.delete)} to delete, "
        f"{plan.unchanged} unchanged."
    )


def plan_lines(plan: Plan) -> list[Line]:
    """The plan in the style of Terraform, line by line with each line's tone: one block per
    action, then the unmanaged rows, the refusals and the summary line."""
    lines: list[Line] = []
    if plan.actions:
        lines += [("reconciler will perform the following actions:", None), ("", None)]
        for i, action in enumerate(plan.actions):
            lines += [("", None)] if i else []
            lines.extend(_action_lines(action))
    else:
        lines.append(("No changes. The database matches the files.", None))
    if plan.unmanaged:
        lines += [("", None), ("Not managed by the files (left alone):", None)]
        lines.extend((f"  {kind} {key!r}", None) for kind, key in plan.unmanaged)
    if plan.refusals:
        lines += [("", None), ("Refused:", Tone.refusal)]
        lines.extend((f"  ! {reason}", Tone.refusal) for reason in plan.refusals)
    lines += [("", None), (summary_line(plan), Tone.summary)]
    return lines


def _action_lines(action: Action) -> list[Line]:
    where = f"  ({action.source_file}:{action.source_line})" if action.source_file else ""
    drift = "  [drift: changed outside the files]" if action.drift else ""
    head = f"  {SIGNS[action.op]} {action.op} {action.kind} {action.key!r}{where}{drift}"
    if action.op is Op.create and action.essence is not None:
        fields = [f"      {c.path}: {_shown(c, c.new)}" for c in diff({}, action.essence)]
    else:
        fields = [
            f"      {c.path}: {_shown(c, c.old)} -> {_shown(c, c.new)}" for c in action.changes
        ]
    return [(head, Tone(action.op.value)), *((f, None) for f in fields)]


def action_line(action: Action, root: Path | None = None, fields: int = 3, width: int = 60) -> str:
    """One action on one line, for logs and the status page: `~ route scoring
    (routes.yaml:4): model "llama3.1:8b" -> "qwen2.5:7b"`, at most `fields` fields shown, the
    file relative to `root` when it is under it."""
    where = ""
    if action.source_file:
        source = Path(action.source_file)
        if root is not None and source.is_relative_to(root):
            source = source.relative_to(root)
        where = f" ({source}:{action.source_line})"
    drift = " [drift corrected]" if action.drift else ""
    head = f"{SIGNS[action.op]} {action.kind} {action.key}{where}{drift}"
    if action.op is not Op.update or not action.changes:
        return head
    shown = [
        f"{c.path} {_short(_shown(c, c.old), width)} -> {_short(_shown(c, c.new), width)}"
        for c in action.changes[:fields]
    ]
    more = len(action.changes) - fields
    return f"{head}: {'; '.join(shown)}" + (f"; and {more} more field(s)" if more > 0 else "")


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _shown(change: FieldChange, value: object) -> str:
    """A value of a plan's field as it may be printed: a row written by hand, or drifted, may
    hold a literal credential, which is never shown (`field_rules.masked`)."""
    return _value(masked(value, change.path.rsplit(".", 1)[-1]))


def _value(value: object) -> str:
    if value is None:
        return "(none)"
    if is_secret_ref(value):
        return f"{{env: {value['env']}}}"
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
