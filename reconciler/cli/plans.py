"""Plans on the command line: showing one, saving and reading plan files, asking before apply.

Heavy packages (the database stack) are imported inside the functions that use them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.cli.console import STYLES, colour_on, err, out, print_lines
from reconciler.core import jsonsafe
from reconciler.core.text import escape_control
from reconciler.errors import StateError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from reconciler.core.plan import Plan
    from reconciler.core.registry import ProviderRegistry

PROMPT = "Do you want to apply these changes? Only 'yes' will be accepted:"
NOT_APPLIED = "nothing was applied"


def refuse(problems: list[str], outcome: str, where: str = "") -> None:
    """Raise when there are problems: one line each, then (for several) a count of them."""
    lines = [f"{where}: {p}" if where else p for p in problems]
    if len(lines) == 1:
        raise StateError(escape_control(f"{lines[0]}; {outcome}"))
    if lines:
        for line in lines:
            err.print(escape_control(line))
        place = f" in {where}" if where else ""
        raise StateError(escape_control(f"{len(lines)} problems{place}; {outcome}"))


def show_plan(the_plan: Plan) -> None:
    """The plan as text, coloured on a terminal, every control character a file or a row could
    carry escaped."""
    from reconciler.render import plan_lines

    print_lines((escape_control(text), tone) for text, tone in plan_lines(the_plan))


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def saved_note(path: Path, the_plan: Plan) -> str:
    """What to run to apply a plan just saved, or why apply will refuse it."""
    shown = escape_control(str(path))
    overrides = {r.override for r in the_plan.refusals}
    if not the_plan.refusals:
        return f"Saved the plan to {shown}; apply it with `reconciler apply {shown}`."
    if None in overrides:
        return f"Saved the plan to {shown}; apply refuses it until the refusals above are solved."
    options = " ".join(sorted(str(o) for o in overrides))
    return (
        f"Saved the plan to {shown}; apply refuses it without {options}: "
        f"`reconciler apply {options} {shown}`."
    )


def write_plan_file(path: Path, document: dict[str, Any]) -> None:
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


def read_saved_plan(path: Path, registry: ProviderRegistry, outcome: str = NOT_APPLIED) -> Plan:
    """The saved plan in `path`, refused unless every row it writes is a valid declaration.

    `apply FILE` and `show FILE` read plans here; `outcome` says what a refusal means.
    """
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
    refuse(content_problems(saved, registry), f"{outcome}; {AGAIN}", shown)
    return saved


def check_references(engine: Engine, path: Path, saved: Plan) -> None:
    """Routes the saved plan writes must name providers that exist once it is applied.

    Checked against the state the plan was made for; on any other state apply refuses the
    plan as stale, inside its lock.
    """
    from reconciler.core.plan import state_digest
    from reconciler.core.plan_doc import AGAIN, reference_problems
    from reconciler.service import state

    observed = state.observed(engine)
    if state_digest(observed) == saved.base_digest:
        problems = reference_problems(saved, observed)
        refuse(problems, f"{NOT_APPLIED}; {AGAIN}", escape_control(str(path)))


def interactive() -> bool:
    """True when a person is at the keyboard: standard input and output are both terminals."""
    try:
        return sys.stdin is not None and sys.stdin.isatty() and sys.stdout.isatty()
    except ValueError:  # a closed stream
        return False


def confirmed() -> bool:
    """Ask for `yes`; anything else, or the end of input, is a no."""
    out.print()
    out.print(PROMPT, style=STYLES["ask"] if colour_on() else None, end=" ")
    answer = sys.stdin.readline()
    out.print()
    return answer.strip() == "yes"
